"""The writing assistant (issue #20 §3): continuation with our GPTs (streamed; the poetry mode's verse forms
and acrostics), sentiment-controlled continuation / rewriting of Chinese reviews by classifier-guided
decoding (FUDGE), and writing-material recommendation (nearest poems / sentences to a draft).

    from zhixing.apps.write import Writer, StyleGuide, MaterialIndex
    w = Writer("runs/gpt-reviews-zh-cpu")
    for piece in w.stream("这款手机"): print(piece, end="")
    guide = StyleGuide("runs/write-sentiment-guide", target="positive", strength=2.0)
    w.rewrite("屏幕太暗，电池也不耐用", guide)
    MaterialIndex.load("runs/write-materials").search("春风又绿江南岸", k=5)
"""

from zhixing.apps.write.continuation import Writer
from zhixing.apps.write.guidance import StyleGuide
from zhixing.apps.write.materials import MaterialIndex

__all__ = ["MaterialIndex", "StyleGuide", "Writer"]
