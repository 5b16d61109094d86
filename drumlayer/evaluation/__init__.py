"""The paper's Section 4 as batch evaluations: results (typed), evaluate (the experiments
and the command), baselines (NNLS, matching pursuit, nearest, uniform), report (figures and
report.md).
"""
