"""CSQ (Yuan et al., "Central Similarity Quantization", CVPR 2020): Hadamard rows (random balanced rows when
2q < C) as centers, then the center loss."""
from shc.methods.centers import CENTER_LOSS_OPTIONS, CenterMethod


class CSQ(CenterMethod):
    name = "csq"
    citation = ("Yuan, Wang, Yu, Xiong, Tian, Huang, Feng. Central Similarity Quantization for Efficient Image "
                "and Video Retrieval. CVPR 2020")
    options = dict(CENTER_LOSS_OPTIONS)
