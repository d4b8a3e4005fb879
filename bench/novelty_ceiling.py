"""How novel can a flow from the training distribution look? The NLD ratio of fresh training-like flows.

The policy issue asks for an NLD ratio >= 0.6 (paper Table 2): the normalized Levenshtein distance from
each generated flow to its nearest training flow, over the mean distance between training flows. The
paper's training set is 330 distinct rendered flows; ours is every base flow augmented
`flows.variants_per_base` times (components and numbers re-drawn), so the training flows lie densely
around each base. This bench draws fresh variants from the very generator of the training flows (a seed
the flows stage never uses) and measures their ratio against the training flows, rebuilt here from the
profile's params and the shipped base flows (no pipeline output needed): a flow that looks like any
training flow cannot score much above it, so it bounds what a policy that learnt the data can reach.

Run: `python -m bench novelty_ceiling` (~1 min on one core).
"""

from __future__ import annotations

import random

import numpy as np

from bench._common import bench_params
from flowrl.data.augment import augment_library, flow_family, make_variant
from flowrl.data.base_flows import load_base_flows
from flowrl.encoding.policy_view import policy_text
from flowrl.evaluation.novelty import mean_pairwise_nld, nearest_nld

N_FRESH = 256
FRESH_SEED = "novelty-ceiling"
PAPER_TARGET = 0.6


def main() -> dict:
    params = bench_params()
    bases = list(load_base_flows())
    rows, _ = augment_library(bases, params.flows.variants_per_base, params.seed)
    training = [policy_text(r["graph"]) for r in rows]
    training_nld = mean_pairwise_nld(training, params.evaluate.nld_pairs, params.seed)
    rng = random.Random(FRESH_SEED)
    fresh = [
        policy_text(make_variant(g, flow_family(g, name), rng))
        for name, g in (bases[i % len(bases)] for i in range(N_FRESH))
    ]
    nearest = nearest_nld(fresh, training)
    known = set(training)
    out = {
        "training_flows": len(training),
        "training_mean_pairwise_nld": round(training_nld, 4),
        "fresh_flows": len(fresh),
        "fresh_nearest_nld": round(float(nearest.mean()), 4),
        "fresh_nld_ratio": round(float(nearest.mean()) / training_nld, 4),
        "fresh_exists_in_data": round(float(np.mean([t in known for t in fresh])), 4),
        "paper_target_nld_ratio": PAPER_TARGET,
    }
    print(
        f"fresh training-like flows: NLD ratio {out['fresh_nld_ratio']:.3f} (paper target {PAPER_TARGET}); "
        f"exists in data {out['fresh_exists_in_data']:.3f}"
    )
    return out
