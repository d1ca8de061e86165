"""Weight-space averaging (`ens swa`): uniform, weighted, top-N by a metric, EMA; BatchNorm refresh.

The averaged checkpoint is a plain state dict (`.safetensors` or `.pth`) that `ens predict` loads
like any other, so an SWA model is scored on OOF and blended beside the single checkpoints and the
seed average.
"""

from ensemble.swa.average import average_checkpoints, check_compatible, normalise_weights
from ensemble.swa.bn import BnRefresh, refresh_bn
from ensemble.swa.core import BN_NOTE, Source, SwaResult, gather_checkpoints, swa
from ensemble.swa.select import MODES, match_metrics, read_metrics, select_top_n
from ensemble.swa.write import FORMATS, output_paths, save_state_dict

__all__ = [
    "BN_NOTE", "FORMATS", "MODES", "BnRefresh", "Source", "SwaResult", "average_checkpoints", "check_compatible",
    "gather_checkpoints", "match_metrics", "normalise_weights", "output_paths", "read_metrics", "refresh_bn",
    "save_state_dict", "select_top_n", "swa",
]
