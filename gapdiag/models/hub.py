"""Model-hub access while a model is built: probe the hub once, never sit through a retry storm.

huggingface_hub retries an unreachable endpoint five times with back-off and logs two warning lines per try
(about 55 s and 48 lines before open_clip gives up). :func:`hub_access` instead asks the endpoint once, with a
short timeout; when it does not answer, the build runs in huggingface_hub's offline mode for its duration, so
that files already in the local hub cache still load and a missing one fails at once. The hub libraries'
warnings are captured for the duration either way: gapdiag reports a failure itself, in one line.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

#: Seconds the single probe of the hub endpoint may take before the hub counts as unreachable.
PROBE_TIMEOUT_S = 3.0
#: Loggers of the hub libraries whose retry warnings gapdiag replaces by its own one-line error.
HUB_LOGGERS = ("huggingface_hub", "huggingface_hub.utils._http", "urllib3", "httpx", "filelock")


@dataclass
class Hub:
    """What the probe found: the endpoint and why it is unreachable (None: reachable, offline or not probed)."""

    endpoint: str
    unreachable: str | None = None
    offline: bool = False


def probe(endpoint: str, timeout: float = PROBE_TIMEOUT_S) -> str | None:
    """One HEAD request to ``endpoint`` through huggingface_hub's own session (same proxies, no retries).

    Returns:
        None when the endpoint answered (any HTTP status), else the reason in a few words.
    """
    from huggingface_hub.utils import get_session

    try:
        get_session().head(endpoint, timeout=timeout)
    except Exception as e:  # noqa: BLE001 - any failure to get an answer means "unreachable"
        return str(e).splitlines()[0][:120] if str(e) else type(e).__name__
    return None


@contextlib.contextmanager
def hub_access(needs_hub: bool) -> Iterator[Hub]:
    """Run a model build with the hub probed once (when ``needs_hub``) and its libraries' warnings captured.

    When the probe gets no answer, ``huggingface_hub.constants.HF_HUB_OFFLINE`` is set until the block ends:
    the local hub cache still serves what it holds and everything else fails without retrying.
    """
    from huggingface_hub import constants

    hub = Hub(endpoint=constants.ENDPOINT, offline=bool(constants.HF_HUB_OFFLINE))
    loggers = [logging.getLogger(name) for name in HUB_LOGGERS]
    levels = [lg.level for lg in loggers]
    was_offline = constants.HF_HUB_OFFLINE
    try:
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        if needs_hub and not hub.offline:
            hub.unreachable = probe(hub.endpoint)
            if hub.unreachable is not None:
                constants.HF_HUB_OFFLINE = True
        yield hub
    finally:
        constants.HF_HUB_OFFLINE = was_offline
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def offline_hint(model: str, pretrained: str | None) -> str:
    """How to get the weights onto this machine: pre-download where there is network, then run offline."""
    if model.startswith("hf-hub:"):
        fetch = f"hf download {model.removeprefix('hf-hub:')}"
    else:
        # The tokenizer too: SigLIP's and other hf_tokenizer_name models' come from the hub, apart from the weights.
        tag = f", pretrained='{pretrained}'" if pretrained else ""
        fetch = (f"python -c \"import open_clip; open_clip.create_model('{model}'{tag}); "
                 f"open_clip.get_tokenizer('{model}')\"")
    home = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (f"no network? pre-download where there is one (`{fetch}`), copy {home} here and set "
            "HF_HUB_OFFLINE=1; or pass a local checkpoint file (-m ARCH -p FILE, or -m hf:./FOLDER for a "
            "transformers model)")
