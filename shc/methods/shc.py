"""SHC (Chen et al., ACM MM 2024 / TOIS 2025): semantic hash centers from a class similarity S (stage 1), close
for similar classes and never closer than the Gilbert–Varshamov distance d, then the center loss.

``polish_passes`` (default 100) adds a feasible bit-flip descent after the published optimiser; 0 gives the
published method (``--method-option polish_passes=0``). ``eta`` is the public code's "dataset-dependent" η.
"""
from shc.centers import SHC_DEFAULTS
from shc.methods.centers import CENTER_LOSS_OPTIONS, CenterMethod


class SHC(CenterMethod):
    name = "shc"
    citation = ("Chen, Liu, Zhou, Ma, Chen, Zhang. Deep Hashing with Semantic Hash Centers for Image Retrieval. "
                "ACM MM 2024 / ACM TOIS 2025")
    uses_similarity = True
    center_options = SHC_DEFAULTS
    options = {**CENTER_LOSS_OPTIONS, **SHC_DEFAULTS}
