"""MMLU subjects and the groups they are evaluated in.

The paper evaluates on MMLU "STEM" and "social sciences" and those groups are lists of
subjects, so the lists live in one place: lm-eval harness's four-way category of each of the
57 subjects (``lm_eval/tasks/mmlu/_generate_configs.py``, ``SUBJECTS``), so our numbers line up
with what readers get from lm-eval, plus the paper's own 11-subject social-sciences list
(the authors' code before its 2025 cleanup added ``human_sexuality``).
"""

from __future__ import annotations

from collections.abc import Iterable

from lorauq.errors import DataError, did_you_mean

__all__ = [
    "LM_EVAL_CATEGORIES",
    "MMLU_CATEGORY",
    "MMLU_GROUPS",
    "MMLU_SUBJECTS",
    "SOCIAL_SCIENCES_PAPER",
    "mmlu_group_of",
    "mmlu_subjects",
]

#: lm-eval harness's category of every MMLU subject (19 stem, 12 social sciences,
#: 13 humanities, 13 other), in alphabetical order of subject.
MMLU_CATEGORY: dict[str, str] = {
    "abstract_algebra": "stem",
    "anatomy": "stem",
    "astronomy": "stem",
    "business_ethics": "other",
    "clinical_knowledge": "other",
    "college_biology": "stem",
    "college_chemistry": "stem",
    "college_computer_science": "stem",
    "college_mathematics": "stem",
    "college_medicine": "other",
    "college_physics": "stem",
    "computer_security": "stem",
    "conceptual_physics": "stem",
    "econometrics": "social_sciences",
    "electrical_engineering": "stem",
    "elementary_mathematics": "stem",
    "formal_logic": "humanities",
    "global_facts": "other",
    "high_school_biology": "stem",
    "high_school_chemistry": "stem",
    "high_school_computer_science": "stem",
    "high_school_european_history": "humanities",
    "high_school_geography": "social_sciences",
    "high_school_government_and_politics": "social_sciences",
    "high_school_macroeconomics": "social_sciences",
    "high_school_mathematics": "stem",
    "high_school_microeconomics": "social_sciences",
    "high_school_physics": "stem",
    "high_school_psychology": "social_sciences",
    "high_school_statistics": "stem",
    "high_school_us_history": "humanities",
    "high_school_world_history": "humanities",
    "human_aging": "other",
    "human_sexuality": "social_sciences",
    "international_law": "humanities",
    "jurisprudence": "humanities",
    "logical_fallacies": "humanities",
    "machine_learning": "stem",
    "management": "other",
    "marketing": "other",
    "medical_genetics": "other",
    "miscellaneous": "other",
    "moral_disputes": "humanities",
    "moral_scenarios": "humanities",
    "nutrition": "other",
    "philosophy": "humanities",
    "prehistory": "humanities",
    "professional_accounting": "other",
    "professional_law": "humanities",
    "professional_medicine": "other",
    "professional_psychology": "social_sciences",
    "public_relations": "social_sciences",
    "security_studies": "social_sciences",
    "sociology": "social_sciences",
    "us_foreign_policy": "social_sciences",
    "virology": "other",
    "world_religions": "humanities",
}

#: All 57 subjects, alphabetical: the order every subject selection is returned in.
MMLU_SUBJECTS: tuple[str, ...] = tuple(sorted(MMLU_CATEGORY))

#: The paper's social-sciences list (11 subjects, 2,946 test questions): lm-eval's
#: ``social_sciences`` without ``human_sexuality``.
SOCIAL_SCIENCES_PAPER: tuple[str, ...] = (
    "econometrics",
    "high_school_geography",
    "high_school_government_and_politics",
    "high_school_macroeconomics",
    "high_school_microeconomics",
    "high_school_psychology",
    "professional_psychology",
    "public_relations",
    "security_studies",
    "sociology",
    "us_foreign_policy",
)

#: lm-eval's four categories, in lm-eval's reporting order.
LM_EVAL_CATEGORIES: tuple[str, ...] = ("stem", "social_sciences", "humanities", "other")

#: Every group name ``mmlu_subjects`` accepts, mapped to its subjects.
MMLU_GROUPS: dict[str, tuple[str, ...]] = {
    **{
        category: tuple(s for s in MMLU_SUBJECTS if MMLU_CATEGORY[s] == category)
        for category in LM_EVAL_CATEGORIES
    },
    "social_sciences_paper": SOCIAL_SCIENCES_PAPER,
}


def _check_subject(subject: str) -> str:
    """Return ``subject`` if it is an MMLU subject, else raise naming the nearest one."""
    if subject not in MMLU_CATEGORY:
        raise DataError(
            f"unknown MMLU subject {subject!r}{did_you_mean(subject, MMLU_SUBJECTS, cutoff=0)}"
        )
    return subject


def mmlu_group_of(subject: str) -> str:
    """lm-eval's category (stem, social_sciences, humanities or other) of a subject."""
    return MMLU_CATEGORY[_check_subject(subject)]


def mmlu_subjects(group: str | None = None, subjects: Iterable[str] | None = None) -> list[str]:
    """The MMLU subjects selected by a group name and/or an explicit list.

    ``group=None`` and ``subjects=None`` select all 57. With ``subjects``, their order is kept
    (duplicates dropped); with both, every listed subject must belong to the group, because a
    silently emptied intersection would evaluate on nothing.
    """
    if group is not None and group not in MMLU_GROUPS:
        raise DataError(
            f"unknown MMLU group {group!r}{did_you_mean(group, MMLU_GROUPS, cutoff=0)} "
            f"(valid: {', '.join(MMLU_GROUPS)})"
        )
    pool = MMLU_GROUPS[group] if group is not None else MMLU_SUBJECTS
    if subjects is None:
        return list(pool)
    if isinstance(subjects, str):
        subjects = [subjects]
    chosen: list[str] = []
    for subject in subjects:
        _check_subject(subject)
        if subject not in pool:
            raise DataError(f"MMLU subject {subject!r} is not in group {group!r}")
        if subject not in chosen:
            chosen.append(subject)
    if not chosen:
        raise DataError("subjects= is an empty list; give at least one MMLU subject or None")
    return chosen
