"""An example codec analysis plugin, packaged the way a third party would.

It counts how often each SAE feature fires in a `features` artifact and reports
the firing frequency, the mean activation when firing, and the mean L0; its `report`
hook puts its answer and table into `codec report`'s page.
"""

from dataclasses import dataclass

from codec_cli.errors import BadInput
from codec_cli.plugin_api import Analysis, Context, Headline, Result, Section


@dataclass(frozen=True)
class Params:
    min_count: int = 1
    """A feature counts as alive when it fires at least this many times."""

    def __post_init__(self):
        # Checked as `-p` is read, so a bad value stops `codec analyze` before any plugin runs.
        if self.min_count < 0:
            raise BadInput(f"feature-frequency: -p min_count={self.min_count}: a count cannot be negative")


class FeatureFrequency(Analysis):
    name = "feature-frequency"
    api_version = 1
    requires = ("features",)
    Params = Params

    def report(self, artifact) -> Section:
        """What `codec report` shows of this plugin's artifact: an answer to a question of its own,
        a number, and its table (whose `feature` column links to each feature's card)."""
        s = artifact.json("summary.json")
        return Section(question="How many features are alive?",
                       answer=f"{s['n_alive']} features fire at least min_count times",
                       headline=[Headline("mean L0", s["mean_l0"]), Headline("alive features", s["n_alive"])],
                       tables=["frequency.parquet"])

    def run(self, ctx: Context) -> Result:
        import numpy as np  # heavy imports belong inside run()

        features = ctx.inputs["features"]
        d_sae = features.attrs["d_sae"]
        count = np.zeros(d_sae, dtype=np.int64)
        total = np.zeros(d_sae, dtype=np.float64)
        n_tokens = 0
        for shard in features.topk():
            fired = (shard.indices >= 0) & (shard.values > 0)
            np.add.at(count, shard.indices[fired], 1)
            np.add.at(total, shard.indices[fired], shard.values[fired].astype(np.float64))
            n_tokens += shard.indices.shape[0]
        ctx.log(f"counted {n_tokens} tokens")
        freq = count / max(n_tokens, 1)
        mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
        alive = int((count >= ctx.params.min_count).sum())
        return Result(
            summary={"n_tokens": n_tokens, "n_alive": alive, "mean_l0": float(count.sum() / max(n_tokens, 1))},
            tables={"frequency": {"feature": np.arange(d_sae), "count": count,
                                  "frequency": freq, "mean_activation": mean}},
        )
