"""What `codec report` shows of each artifact kind the stages write: the same hook an analysis
plugin's `report` is (plugin_api.Section), one function per kind, keyed in SECTIONS.

Each reads only the artifact's own files, names the question it answers, and puts every score
beside the baseline its stage measured with the same rule (docs/report.md lists them).
"""

from __future__ import annotations

from typing import Any, Callable

from codec_cli.artifacts import Artifact
from codec_cli.plugin_api import Headline, Section
from codec_cli.stages.html import short as g


def _get(d: Any, *path: str) -> Any:
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d


def features(art: Artifact) -> Section:
    a = art.attrs
    sae = a.get("sae") or {}
    return Section(
        headline=[Headline("rows (tokens)", a.get("rows")), Headline("SAE width d_sae", a.get("d_sae")),
                  Headline("features kept per row k", a.get("k")), Headline("mean L0 of the SAE", a.get("l0")),
                  Headline("activation mass kept", a.get("mass_kept")),
                  Headline("features that fired", a.get("features_seen"))],
        text=f"Model {a.get('model')}, hook {a.get('hook')}, SAE {sae.get('origin', '?')} "
             f"({sae.get('architecture', '?')}); real neurons stored: {a.get('neurons') or 'none'}.",
        tables=[n for n in ("features.parquet",) if n in art.manifest["files"]])


def squeezer(art: Artifact) -> Section:
    m = art.json("metrics.json")
    a = art.attrs
    own = "the model's own codec: its SAE's decode and encode, on the same tokens"
    return Section(
        question="faithfulness",
        answer=f"{m.get('neurons')} {a.get('neuron_act')} neurons keep {m.get('represented')} of {m.get('features')} "
               f"features; FVU {g(m.get('fvu'))}, faithfulness ratio {g(m.get('faithfulness_ratio'))} "
               "(1 = as good as the model's own codec)",
        headline=[Headline("held-out loss", m.get("loss"), m.get("model_codec_loss"), own),
                  Headline("faithfulness ratio (loss / model's)", m.get("faithfulness_ratio"), 1.0, own),
                  Headline("fraction of variance unexplained", m.get("fvu"), 1.0, "predicting each feature's mean"),
                  Headline("represented features", m.get("represented")), Headline("dropped", m.get("dropped")),
                  Headline("never fired", m.get("never_fired")), Headline("dead neurons", m.get("dead_neurons")),
                  Headline("epochs", m.get("epochs"))],
        text=f"{m.get('features')} features into {m.get('neurons')} neurons ({a.get('neuron_act')}, "
             f"{'tied' if a.get('tied') else 'untied'}), k {a.get('k')}, rescale {a.get('rescale')}; measured on "
             f"{m.get('held_out_rows')} held-out rows (docs/metrics.md).",
        tables=["features.parquet", "neurons.parquet", "training.parquet"])


def sae(art: Artifact) -> Section:
    m = art.json("metrics.json")
    head = [Headline("L0", m.get("l0")), Headline("FVU", m.get("fvu"), 1.0, "predicting the mean"),
            Headline("dead fraction", m.get("dead_fraction")), Headline("d_sae", m.get("d_sae"))]
    if "ce_loss_recovered" in m:
        head += [Headline("CE loss recovered", m.get("ce_loss_recovered"), 0.0, "zero ablation"),
                 Headline("CE with the SAE", m.get("ce_sae"), m.get("ce_zero_ablation"), "zero ablation"),
                 Headline("CE clean", m.get("ce_clean"))]
    a = art.attrs
    return Section(headline=head, text=f"{a.get('architecture')} SAE on {a.get('model')} at {a.get('hook')} "
                                       f"(d_in {a.get('d_in')}, d_sae {a.get('d_sae')}); docs/sae.md.",
                   tables=["training.parquet"])


def world(art: Artifact) -> Section:
    m = art.json("metrics.json") if "metrics.json" in art.manifest["files"] else {}
    model = m.get("model") or {}
    head = [Headline(k, v) for k, v in model.items() if isinstance(v, (int, float)) and not isinstance(v, bool)][:10]
    for name, s in (m.get("saes") or {}).items():
        head += [Headline(f"SAE {name}: {k}", s.get(k)) for k in ("l0", "fvu", "dead_fraction") if k in s]
    return Section(headline=head, text=f"The {art.attrs.get('world')} world (docs/worlds.md).", tables=[])


def comparison(art: Artifact) -> Section:
    s = art.json("summary.json")
    if art.attrs.get("compare") == "dictionaries":
        return dictionaries(art, s)
    rand, shuf = _get(s, "chance", "random", "mean"), _get(s, "chance", "shuffled", "mean")
    room, org = s.get("roommates") or {}, s.get("or_gate") or {}
    init, shuffled = "a random-init Squeezer, same matching", "shuffled tokens, same matching"
    return Section(
        question="neurons",
        answer=f"matched correlation {g(s.get('matched_correlation'))} against {g(rand)} for a random-init "
               f"Squeezer and {g(shuf)} for shuffled tokens (ceiling {g(s.get('ceiling'))}); roommate Jaccard "
               f"{g(room.get('jaccard'))} against {g(room.get('jaccard_chance'))}",
        headline=[Headline("matched correlation", s.get("matched_correlation"), rand, init),
                  Headline("matched correlation", s.get("matched_correlation"), shuf, shuffled),
                  Headline("ceiling (the real neurons' own code)", s.get("ceiling")),
                  Headline("p, against shuffled tokens", s.get("p_value")),
                  Headline("p, against a random-init Squeezer", s.get("p_value_random")),
                  Headline("roommate Jaccard", room.get("jaccard"), room.get("jaccard_chance"), "random pairing"),
                  Headline("roommate Jaccard", room.get("jaccard"), room.get("jaccard_random_squeezer"),
                           "a random-init Squeezer"),
                  Headline("synthetic OR-gate degree", org.get("degree_synthetic"),
                           org.get("degree_synthetic_chance"), "null neurons"),
                  Headline("real OR-gate degree", org.get("degree_real"), org.get("degree_real_chance"),
                           "null neurons")],
        text=f"{s.get('synthetic_neurons')} synthetic against {s.get('real_neurons')} real neurons at "
             f"{s.get('real_hook')}, on {s.get('rows')} {s.get('rows_compared')} rows; docs/compare.md.",
        tables=["matches.parquet"])  # roommates.parquet mixes real and synthetic neurons: not card ids


def dictionaries(art: Artifact, s: dict) -> Section:
    rand, init = "random dictionaries of the same shapes", "the same inputs at initialisation"
    head = [Headline("PW-MCC", s.get("pw_mcc"), s.get("pw_mcc_chance_random"), rand),
            Headline("PW-MCC", s.get("pw_mcc"), s.get("pw_mcc_at_initialisation"), init),
            Headline("shared latents", s.get("shared"), s.get("shared_chance_random"), rand),
            Headline("found by every input", s.get("found_by_all"))]
    for p in s.get("pairs") or []:
        pair = f"{p.get('a')} ~ {p.get('b')}"
        head += [Headline(f"{pair}: MCC", p.get("mcc"), _get(p, "chance_random", "mcc"), rand),
                 Headline(f"{pair}: MMCS", p.get("mmcs"), _get(p, "chance_random", "mmcs"), rand),
                 Headline(f"{pair}: sqrt(2 ln F / d), the extreme-value level", p.get("extreme_value"))]
    return Section(
        question="stability",
        answer=f"PW-MCC {g(s.get('pw_mcc'))} against {g(s.get('pw_mcc_chance_random'))} for random dictionaries "
               f"({g(s.get('pw_mcc_at_initialisation'))} at initialisation); {g(s.get('shared'))} of latents shared",
        headline=head, text=f"{len(s.get('inputs') or [])} dictionaries; {s.get('shared_rule')}; docs/compare.md.",
        tables=["latents.parquet", "pairs.parquet"])


def themes(art: Artifact) -> Section:
    s = art.json("summary.json")
    coh = s.get("coherence") or {}
    cos, co = coh.get("cosine") or {}, coh.get("coactivation") or {}
    groups = coh.get("baseline") or "random groups of each theme's size from the atoms outside it"
    largest = "; ".join(f"{t['label']} ({t['size']})" for t in (s.get("largest") or [])[:3])
    return Section(
        question="themes",
        answer=f"{s.get('themes')} themes over {s.get('alive')} live atoms ({g(s.get('noise_share'))} noise); coherence "
               f"{g(cos.get('mean'))} against {g(cos.get('baseline'))} for random groups (cosine), "
               f"{g(co.get('mean'))} against {g(co.get('baseline'))} (co-activation); largest: {largest}",
        headline=[Headline("themes", s.get("themes")), Headline("live atoms", s.get("alive")),
                  Headline("noise share", s.get("noise_share")),
                  Headline("decoder cosine within themes", cos.get("mean"), cos.get("baseline"), groups),
                  Headline("co-activation within themes", co.get("mean"), co.get("baseline"), groups),
                  Headline("themes above chance (cosine)", cos.get("above_chance")),
                  Headline("themes above chance (co-activation)", co.get("above_chance"))],
        text=f"{s.get('method')} on {s.get('embed')} embeddings; each theme labelled by its top tokens (docs/cluster.md).",
        tables=["themes.parquet", "atoms.parquet"])


def _at(curve: list[dict], strength: float) -> dict:
    return next((r for r in curve if r.get("strength") == strength), {})


def steering(art: Artifact) -> Section:
    s = art.json("summary.json")
    curves, theme = s.get("curves") or {}, s.get("theme") or {}
    ours = curves.get("theme") or []
    top = max((r["strength"] for r in ours), key=abs, default=None)
    here = _at(ours, top)
    clean = _get(s, "clean", "target")
    head = [Headline(f"theme's target mass at s = {g(top)}", here.get("target"), clean, "the clean model")]
    for arm in ("atom", "random-direction", "random-group"):
        if arm in curves:
            head.append(Headline(f"shift in target mass at s = {g(top)}", here.get("shift"),
                                 _at(curves[arm], top).get("shift"), f"{arm}, same strength"))
    for arm, rows in (s.get("matched_kl") or {}).items():
        r = _at(rows, top)
        head.append(Headline(f"effect at matched KL (s = {g(top)})", r.get("theme_effect"), r.get("baseline_effect"),
                             f"{arm} at a KL no larger"))
    head += [Headline(f"KL on neutral text at s = {g(top)}", here.get("kl"), 0.0, "the clean model"),
             Headline("SNR slope against N atoms", _get(s, "snr_vs_atoms", "theme", "slope"), 0.5, "√N")]
    group = _at((s.get("matched_kl") or {}).get("random-group") or [], top)
    return Section(
        question="steering",
        answer=f"{s.get('method')} '{theme.get('label')}' at s = {g(top)}: target mass {g(here.get('target'))} from "
               f"{g(clean)}, KL {g(here.get('kl'))}; at matched KL its effect {g(group.get('theme_effect'))}, a random "
               f"group's {g(group.get('baseline_effect'))}",
        headline=head, text=f"Baselines: {s.get('baseline')}. docs/steer.md.",
        tables=["metrics.parquet", "generations.parquet"])


def monitoring(art: Artifact) -> Section:
    s = art.json("summary.json")
    head, said = [], []
    for t in s.get("themes") or []:
        label = t.get("label", t.get("theme"))
        head += [Headline(f"{label}: AUROC", t.get("auroc"), _get(t, "random_groups", "mean_auroc"),
                          "random groups of its size, same score"),
                 Headline(f"{label}: AUROC", t.get("auroc"), _get(t, "single_atoms", "best", "auroc"),
                          "its best single atom"),
                 Headline(f"{label}: detection rate", t.get("detection_rate"), t.get("false_positive_rate"),
                          "the false-positive rate on held-out neutral texts")]
        said.append(f"{label} {g(t.get('auroc'))} (random groups {g(_get(t, 'random_groups', 'mean_auroc'))})")
    return Section(question="steering", answer=f"monitoring AUROC: {'; '.join(said)}", headline=head,
                   text=f"Baselines: {s.get('baseline')}. Thresholds are calibrated at a false-positive rate of "
                        f"{g(s.get('fpr_target'))} on half the neutral texts and checked on the other half "
                        "(docs/steer.md).", tables=["texts.parquet"])


def sweep(art: Artifact) -> Section:
    s = art.json("summary.json")
    cells = art.table("cells.parquet", ["sae"])
    head, said = [], []
    for recipe in s.get("saes") or []:
        o = _get(s, "overall", recipe) or {}
        mine = cells.filter(cells["sae"] == recipe)
        chance = mine["best_cosine_chance"].mean() if "best_cosine_chance" in mine.columns else None
        head += [Headline(f"{recipe}: failed cells", o.get("failed")), Headline(f"{recipe}: cells", o.get("cells")),
                 Headline(f"{recipe}: best-match cosine to the truth", o.get("best_cosine"), chance,
                          "as many random unit directions"),
                 Headline(f"{recipe}: Procrustes similarity (chance-corrected)", o.get("procrustes"), 0.0,
                          "random directions' fit"),
                 Headline(f"{recipe}: dead latents", o.get("dead"))]
        said.append(f"{recipe} failed in {o.get('failed')} of {o.get('cells')} cells (best-match cosine "
                    f"{g(o.get('best_cosine'))}, random {g(chance)})")
    axes = ", ".join(str(a) for a, _ in art.attrs.get("axes") or [])
    return Section(question="sweep", answer="; ".join(said), headline=head,
                   text=f"The {s.get('world')} world over {axes}; a cell fails when its SAE has no live latent or an FVU above 0.99 "
                        "(docs/sweep.md).", tables=["cells.parquet"])


SECTIONS: dict[str, Callable[[Artifact], Section]] = {
    "features": features, "squeezer": squeezer, "sae": sae, "world": world, "comparison": comparison,
    "themes": themes, "steering": steering, "monitoring": monitoring, "sweep": sweep,
}
"""The built-in kinds' sections; an analysis artifact's comes from its plugin (report.plugin_section)."""
