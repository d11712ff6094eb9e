"""MDS (Wang et al., CVPR 2023): data-independent centers
pushed apart by an ADMM optimiser until every pair is at least the Gilbert–Varshamov distance d, then the
center loss."""
from shc.centers import MDS_DEFAULTS
from shc.methods.centers import CENTER_LOSS_OPTIONS, CenterMethod


class MDS(CenterMethod):
    name = "mds"
    citation = ("Wang, Pan, Liu, Lai, Yin, Liu. Deep Hashing with Minimal-Distance-Separated Hash Centers. "
                "CVPR 2023")
    center_options = MDS_DEFAULTS
    options = {**CENTER_LOSS_OPTIONS, **MDS_DEFAULTS}
