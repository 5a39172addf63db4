"""The tiny world's effects, the bar each must clear and the room every world seed leaves.

``tests/test_pipeline_e2e.py`` asserts the bars on world seeds 1 and 2;
``tests/test_world_margins.py`` checks that every seed measured by ``scripts/world_margins.py``
(``docs/tiny-world-margins.csv``) clears each bar by its margin.
"""

from __future__ import annotations

#: Each effect's bar (the effect must be at least this) and the room every measured world
#: seed leaves above it. Ratios compare the final ensemble's means on two eval sets.
BARS = {
    "final_in_domain_accuracy": 0.85,
    "prior_known_accuracy": 0.9,
    "auroc_mi_unseen": 0.55,
    "mi_unseen_over_in_domain": 1.0,
    "ee_noisy_over_in_domain": 2.0,
}
MARGINS = {
    "final_in_domain_accuracy": 0.08,
    "prior_known_accuracy": 0.08,
    "auroc_mi_unseen": 0.08,
    "mi_unseen_over_in_domain": 0.05,
    "ee_noisy_over_in_domain": 1.0,
}
