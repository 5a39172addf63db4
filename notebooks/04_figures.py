# ---
# jupyter:
#   jupytext:
#     notebook_metadata_filter: kernelspec,jupytext
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · What the ensemble learned, what it forgot, and when to trust it
#
# From the stored letter logits we compute, per eval set and epoch, the ensemble's accuracy, NLL, ECE (10 equal-width bins, as a fraction) and Brier score, and the decomposition of predictive entropy H(p̄) into expected entropy (aleatoric) and mutual information (epistemic), all in nats.
#
# **Two ways to read every figure below.** In the offline `tiny` profile the four eval sets are built so that the right answer about uncertainty is known in advance:
#
# | eval set | what it is | what must happen |
# |---|---|---|
# | `in_domain` | the fine-tuning task, on held-out words | *learned*: accuracy from about chance to near 1, low entropy |
# | `known` | what the base learned in pre-training, never fine-tuned | high accuracy at epoch 0, then *forgotten* as fine-tuning moves the weights |
# | `unseen` | made-up words with arbitrary labels | members can only guess, and guess differently: **high mutual information**, accuracy at chance (1/5) |
# | `noisy` | in-domain questions whose labels are random half the time | the best answer is to be unsure: **high expected entropy**, accuracy capped near 0.5 + 0.5/5 = 0.6 |
#
# In the `paper` profile (Mistral-7B-v0.1 fine-tuned on CommonsenseQA) the eval sets are `cqa` (in-domain), `mmlu_stem` and `mmlu_ss` (out-of-domain); the paper-profile notes below quote the authors' draft figures (docs/paper.md) as ranges to compare against, not as truth.

# %% tags=["parameters"]
# Parameters (papermill injects overrides after this cell).
params_file: str = "params.yaml"  # the experiment's parameters, relative to the repository root
overrides: dict = {}  # dotted keys over params.yaml, e.g. {"train.epochs": 2}
root: str = ""  # the repository root; empty: found upwards from the working folder

# %%
from lorauq.stages import open_experiment

# The repository root becomes the working folder: every path in params.yaml is relative to it.
params, layout = open_experiment(root, params_file, overrides)

# %%
# %matplotlib inline
from lorauq.stages import figures

report = figures.run(params, layout)
metrics, tables = report.metrics, report.tables
for name, why in report.skipped.items():
    print(f"not drawn: {name}: {why}")

# %% [markdown]
# ## Headline numbers
# Per ensemble, `prior` is epoch 0 (the base model) and `final` the last epoch, for the full ensemble: the metrics above plus AURC (area under the risk–coverage curve, a mean error rate) and `letter_mass` / `letter_mass_p05` (mean and 5th percentile of the probability the answer letters hold in the full vocabulary; see the last section), in the figures' read-out (`analysis.readout`). `reports/metrics.json` holds the same numbers in both read-outs, for `dvc metrics show` / `dvc metrics diff`.

# %%
import pandas as pd

readout = params.analysis.readout
pd.concat(
    {
        (name, stage): pd.DataFrame(metrics[name][readout][stage]).stack()
        for name in params.ensembles
        for stage in ("prior", "final")
    },
    axis=1,
)

# %% [markdown]
# ## Fig A · Accuracy, NLL and ECE over epochs
# **What it shows.** One row per eval set, one column per metric; x is the epoch (0 = the base model, identical for all members). Colour is the ensemble; the solid *M=k (ensemble)* line is the metric of its k-member mean prediction p̄, the dashed *M=1 (member mean)* line averages each member's own metric (the paper's M = 1 curve). Units: accuracy and ECE are fractions, NLL is in nats per question.
#
# **Tiny world.** `in_domain` accuracy climbs from near chance to near 1 and its NLL falls; `known` starts near 1 and drops (forgetting) while its NLL and ECE climb; `unseen` stays at chance; `noisy` cannot pass about 0.6. The ensemble's NLL and ECE should sit at or below the member mean everywhere — averaging members never hurts NLL (it is convex). `reg_l2` (no prior, weight decay) and `r32` (rank 32) show how much the training recipe moves these curves.
#
# **Paper profile.** The drafts show CQA accuracy .646 at epoch 0, ≈ .80 after one epoch and a peak ≈ .836 around epoch 5, then a slow decline (≈ .82 at epoch 10); NLL is lowest near epoch 3 and ECE near epoch 1, after which both rise (over-fitting) while accuracy barely moves. MMLU STEM stays ≈ .49–.50 and MMLU social sciences drifts ≈ .69 → .67. The gap between the solid and dashed lines is what ensembling buys: mainly a smaller rise of NLL and ECE; LoRA-L2 (λ = 1) and Reg-L2 (weight decay 0.001) end close in accuracy.

# %%
report.figure("fig_a_metrics_over_epochs")

# %% [markdown]
# ## Fig B · Agreement with a reference ensemble
# **What it shows.** How reproducible the ensembles' answers are. As in the paper, every ensemble is compared with a reference ensemble trained independently (`analysis.reference`: `r32`, rank 32, M = 5), at the same epoch: solid lines its full ensemble (M = 5), dashed lines its single members against the reference, averaged (M = 1); the reference's own full ensemble is left out (it agrees with itself). `analysis.reference: halves` compares the first ⌊M/2⌋ members of each ensemble with the rest instead (for one-ensemble experiments). Left: *agreement*, the fraction of questions on which both pick the same answer (1 = always). Right: *total variation*, ½ Σ_c |p̄_c − p̄ʳᵉᶠ_c| averaged over questions (0 = identical predictions, 1 = disjoint).
#
# **Tiny world.** Every curve starts at agreement 1 and TV 0 (epoch 0 is one model). `in_domain` should settle at high agreement — the data pin its answers down — while `unseen` (arbitrary labels) and `noisy` keep low agreement and large TV: there the answer depends on the seed, which is exactly epistemic uncertainty. With only 20 questions in those sets the curves are jumpy; read levels, not wiggles. The ensemble curve should lie above (agreement) and below (TV) the single-member curve.
#
# **Paper profile.** Agreement falls from 1 to ≈ .92–.95 on CQA and ≈ .87–.92 on MMLU STEM; TV rises to ≈ .05–.11; M = 5 stays closer to the reference than M = 1.

# %%
report.figure("fig_b_agreement")

# %% [markdown]
# ## Fig C · Predictive entropy against mutual information
# **What it shows.** 2-D histograms of every question: x = predictive entropy H(p̄) (total uncertainty), y = mutual information (epistemic part: how much the members disagree), both in nats; colour = questions per bin on a log scale, shared by all panels. One figure per eval set, for the main ensemble (`analysis.main`), in Fig C's own read-out (`analysis.fig_c.readout`; the authors': five letters plus *other*): right answers on the upper row, wrong answers on the lower, one column per epoch in `analysis.fig_c.epochs`. The paper profile fixes the axes as the authors did (x 0–ln 4, y 0–0.2, 30 bins, colour 1–1000) so figures compare across epochs and sets; a title counts the questions beyond the axes. The vertical distance above 0 is disagreement; the horizontal distance left of the maximum ln K is the part of the uncertainty every member shares (aleatoric = H(p̄) − MI).
#
# **Tiny world.** `unseen` questions climb the y axis (high MI) as fine-tuning proceeds; `noisy` questions sit far right (high entropy) but lower than `unseen` — members agree that the answer is a coin toss; right `in_domain` answers collect near the origin. Wrong answers sit to the right of and above right ones.
#
# **Paper profile.** The drafts (epochs 1, 3, 6) show entropy falling with epochs on every set, out-of-domain MMLU included (growing over-confidence), while MI grows 5–15×; wrong answers carry more entropy and MI than right ones; on MMLU STEM right and wrong overlap most — the signal of a domain the model cannot learn.

# %%
from IPython.display import display

for name in report.figure_names("fig_c_entropy_vs_mi"):
    display(report.figures[name])

# %% [markdown]
# ## What training did to the adapters
# **What it shows.** Left: the LoRA-L2 norm Σ‖B·A‖²_F of each saved adapter (before λ; the loss adds λ times it) over epochs, per ensemble, the member mean with a band from the smallest to the largest member. Right: the mean training loss at the answer position (nats).
#
# **Reading it.** `lora_l2` (λ = 1) is held near the base model; `reg_l2` (λ = 0, AdamW weight decay) drifts further; a larger rank (`r32`) has more room. The authors plotted λ·Σ‖B·A‖²_F for λ = 1: rising to ≈ 0.021 at epoch 4, then falling to ≈ 0.0035 at epoch 10.

# %%
report.figure("lora_l2")

# %% [markdown]
# ## What was learned and what was forgotten
# **What it shows.** For every epoch, each labelled question's move since epoch 0 (the base model), as stacked fractions of the eval set: stayed right, *learned* (wrong → right), *forgotten* (right → wrong), stayed wrong. x = epoch, y = fraction of questions (bars sum to 1). The table below counts the forgotten questions.
#
# **Tiny world.** `in_domain` is mostly *learned*; `known` — right at epoch 0 by construction — turns red (*forgotten*) as fine-tuning goes on; `unseen` churns between learned and forgotten at chance level; `noisy` learns up to its ceiling.
#
# **Paper profile.** On CQA the learned share appears after epoch 1 and, per the v2 abstract, should *stay* learned in the over-fitting regime (epochs ≳ 3–5) even while NLL and ECE rise; on MMLU the forgotten share should be a few points (accuracy drifts ≈ .69 → .67 on social sciences), roughly balanced by questions learned by chance.

# %%
report.figure("learned_forgotten")

# %%
tables["transitions"].query('transition == "forgotten"').pivot_table(
    index="epoch", columns=["ensemble", "eval_set"], values="count"
)

# %% [markdown]
# ## When to trust it · Reliability diagrams
# **What it shows.** The full ensemble at the last epoch. Questions are binned by confidence max p̄ (10 equal-width bins, the bins of the ECE); bars are each bin's accuracy, dots its (mean confidence, accuracy). x and y are probabilities in [0, 1]. On the dashed diagonal the model is calibrated; below it over-confident, above it under-confident. Bins without questions are left empty.
#
# **Tiny world.** `in_domain` sits on or above the diagonal (right answers given with moderate confidence); `known` falls below it once it forgets (confident and wrong); `noisy` should have its mass at middling confidence with accuracy to match; `unseen` below the diagonal wherever the ensemble is confident.
#
# **Paper profile.** ECE ≈ .08 at epoch 0, lowest (≈ .03) after one epoch, then rising to ≈ .10–.18 at epoch 10, so at the final epoch expect dots below the diagonal in the high-confidence bins — over-confidence from over-fitting, worse out of domain.

# %%
report.figure("reliability")

# %% [markdown]
# ## When to trust it · Risk–coverage
# **What it shows.** Selective prediction with the ensemble at the last epoch: answer only the fraction *coverage* (x, 0–1) of questions with the highest max p̄ and abstain on the rest; y is the error rate among the answered. A useful confidence makes the curve fall towards the left; the mean height is the AURC in `metrics.json` (lower is better); the right end is 1 − accuracy.
#
# **Tiny world.** `in_domain` lies flat near 0; `noisy` drops at low coverage only if the ensemble is surer on the questions whose labels were kept; `unseen` stays near 0.8 (chance) at every coverage — there is nothing to be confident about.
#
# **Paper profile.** CQA should fall from ≈ .18 at full coverage to a few percent at low coverage; MMLU STEM starts near .5 and falls less, the hard domain again.

# %%
report.figure("risk_coverage")

# %% [markdown]
# ## When to trust it · Out-of-domain detection (ROC)
# **What it shows.** One panel per other eval set: can a score tell its questions (positives) from the in-domain ones (negatives)? Curves for predictive entropy, mutual information and 1 − max p̄, at the last epoch; x = false positive rate (in-domain questions flagged), y = true positive rate (out-of-domain flagged); the legend gives each AUROC (0.5 = chance, 1 = perfect). The final AUROCs are also in `metrics.json` (`ood_auroc.final`).
#
# **Tiny world.** `unseen` is the epistemic case: mutual information should separate it well (AUROC near 1; entropy too, since the members' mean is flat there). `noisy` is aleatoric: entropy and max p̄ separate it better than MI. `known` is the hard case: the base model knows it, so its questions look familiar and AUROC stays nearer 0.5.
#
# **Paper profile.** CQA (5 options) against MMLU (4 options): the authors' helper code computed these AUROCs but no published number is known. Entropy is capped at ln K, so a different K alone shifts it; MI is less affected by that and is the score to trust.

# %%
report.figure("ood_roc")

# %% [markdown]
# ## Ensemble size
# **What it shows.** At the last epoch, each metric of the ensemble of the first M members against M (x, integer). Units as in Fig A; MI in nats. NLL and ECE should fall with M and flatten; MI *rises* with M, because one member has no disagreement to measure and a few members underestimate it.
#
# **Tiny world.** The biggest change is from M = 1 to 2–3; `unseen` MI grows most.
#
# **Paper profile.** The claim (unverified) is that M = 5 is nearly as good as larger ensembles: expect curves nearly flat by M = 4–5.

# %%
report.figure("ensemble_size")

# %% [markdown]
# ## Per subject
# **What it shows.** At the last epoch, the full ensemble's accuracy (fraction, x from 0 to 1) and mean mutual information (nats) per subject, one row of panels per eval set. In the tiny world subjects are the word groups (`made_up` for unseen words); in the paper profile they are the MMLU subjects (19 STEM, 11–12 social sciences).
#
# **Tiny world.** Fine-tuning teaches the groups in *reversed* letter order, so on `known` (canonical order) forgetting is a letter flip: `fruit` and `vehicle` (b ↔ d) and `animal` (a ↔ e) lose accuracy, `tool` — the middle letter c in both orders — keeps it, and `instrument`, fine-tuned only through the noisy set, keeps most of it.
#
# **Paper profile.** Expect the mathematical STEM subjects (abstract algebra, college mathematics, …) near chance (.25) with the highest MI, and the social sciences well above it.

# %%
report.figure("subjects")

# %% [markdown]
# ## How much probability do the answer letters hold?
# **Why it matters.** The renormalised read-out divides the letters' probabilities by their sum, so a model that put 60 % of its mass on some other token still looks like a confident chooser among the letters. When the K letters hold little of the full-vocabulary mass, the letter probabilities describe a choice the model was not making — the `with_other` read-out (`analysis.readout`) keeps the rest as one extra class and is then the honest one. The mass is Σ_k exp(logit_k − logsumexp_vocab), averaged over members (the ensemble mean's mass), per question; the figure shows its mean, median and 5th percentile over questions per eval set and epoch (epoch 0 = the prior). It is a probability in [0, 1] and does not depend on the read-out.
#
# **Tiny world.** The base was pre-trained on this very prompt, so the letters hold nearly all the mass (≈ 1) before and after fine-tuning; a dip in the 5th percentile marks questions on which fine-tuning moved mass to other tokens.
#
# **Paper profile.** Base Mistral-7B was never taught the `A: (` format; a low prior mass on MMLU would mean epoch-0 numbers are read-out artefacts. Training with the full-vocabulary loss pushes the in-domain mass towards 1 after one epoch; watch whether the out-of-domain sets follow.

# %%
report.figure("letter_mass")

# %%
tables["letter_mass"].query('statistic == "mean"').pivot_table(
    index="epoch", columns=["ensemble", "eval_set"], values="value"
)

# %% [markdown]
# ## Beside the authors' numbers
# **What it shows.** With `analysis.compare_with` (the paper profile: `data/reference/paper_2402.12264.csv`, the authors' draft values; see `data/reference/README.md`), every published number beside ours for the same eval set, ensemble, estimator, metric and epoch, and the difference; also in `reports/paper_comparison.csv`. Fig C rows compare the main ensemble's mean entropy and MI over its right or wrong answers; Fig B ranges compare with the lowest and highest of our curves at the last epoch; LoRA-L2 rows with λ·Σ‖B·A‖²_F of the saved adapters. The authors' values are drafts: read the differences as a sanity check, not as a score.

# %%
compared = report.comparison
if compared.empty:
    print(f"profile {params.profile!r} names no published numbers: nothing to compare")
else:
    display(compared.dropna(subset=["ours"]).round(4))

# %% [markdown]
# ## Beside the rival methods
# **Is a LoRA ensemble worth M fine-tunings?** The `methods` stage (docs/methods.md) puts the ensemble beside what one fine-tuned member allows: the member alone (`single`), MC dropout, a snapshot ensemble of its last epochs (`checkpoints`), temperature scaling, and a Laplace posterior over its LoRA weights (its samples, and the linearised probit read-out): the records of `lorauq/methods/registry.py`, where a new method is added (docs/methods.md). Every method produces samples of the answer distribution per question, read exactly like ensemble members, so accuracy, NLL, ECE and the AUROC of telling an eval set from the in-domain one by mutual information mean the same in every row. `reports/methods.csv` holds every column; below, the headline ones.
#
# **How to read it.**
# - `runs` > 1: the method ran once per member (seed); the cell is the mean ± standard deviation over those runs. A single run has no ± (its `*_std` cell in the CSV says why).
# - `@best` rows stop at the epoch with the lowest in-domain NLL — selected on the in-domain set itself, so their in-domain numbers are optimistic.
# - `auroc_mi` is 0.5 for a score that cannot tell the set from the in-domain one, 1 for one that always ranks it higher. One-sample methods have MI ≡ 0 by construction: their cell says so instead of a number. The in-domain set is the reference.
# - The figure: per eval set NLL, ECE and both AUROCs side by side, and each method's mean expected entropy (aleatoric) against mean MI (epistemic) per eval set.
#
# **Tiny world.** Only methods with several samples can rank `unseen` by MI; the question is how well. The ensemble's members differ most where fine-tuning taught nothing (`unseen`), so it should rank highest; the snapshot ensemble and MC dropout sample one member's neighbourhood and rank less; the Laplace posterior chosen on held-out rows is narrow here (docs/methods.md). Expected entropy should be highest on `noisy` for every method with samples.
#
# **Paper profile.** The methods are off by default (GPU hours); `-S 'paper.methods.run=[single,mc_dropout,checkpoints,temperature,laplace]'` with `-S paper.data.calibration_fraction=0.1` switches them on. Without them the table holds the ensemble's rows only.

# %%
from IPython.display import Image

from lorauq.methods.report import summary

methods_table = pd.read_csv(layout.reports / "methods.csv")
display(summary(methods_table))
Image(filename=str(layout.reports / "methods" / "png" / "methods.png"))
