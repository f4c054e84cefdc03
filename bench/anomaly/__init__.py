"""The anomaly and out-of-distribution study of issue 19 (docs/ANOMALY.md), run by bench/anomaly_study.py:

    validity.py   the conformal p-values' false-positive rate on held-out in-distribution points
    detection.py  AUROC and FPR at 95% TPR against out-of-distribution sets made from those points
    oneclass.py   the one-class protocol of Ruff et al. (2018) on MNIST, resumably, class by class
    transforms.py the out-of-distribution sets; metrics.py the figures; data.py the points; scores.py the scorers
"""
