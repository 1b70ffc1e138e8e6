"""Moved to `codec_cli.plugin_api`; this name stays only until its last importer moves."""

from codec_cli.plugin_api import *  # noqa: F401,F403
from codec_cli.plugin_api import CODEC_API_VERSION, Analysis, Context, NoParams, Result, require_codec  # noqa: F401
