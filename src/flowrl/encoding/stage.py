"""The `encode` stage: infer the schema, encode every flow, build the flow vocabulary and SFT pairs.

SFT pairs are made here rather than in `flows` because they need the encoded text. The policy reads
and writes the policy view of a flow (`flowrl.encoding.policy_view`: no seeds, no negative-prompt
text, no output prefix), so the schema, the vocabulary and the SFT completions are of that view;
`flows.jsonl` keeps the lossless text beside it.
"""

from __future__ import annotations

import random
from pathlib import Path

from tqdm import tqdm

from flowrl.encoding.codec import encode_flow
from flowrl.encoding.policy_view import policy_text, strip_graph
from flowrl.encoding.report import token_count_report
from flowrl.encoding.schema import infer_schema
from flowrl.encoding.vocab import flow_tokens
from flowrl.io import read_jsonl, write_json, write_jsonl
from flowrl.params.model import Params
from flowrl.pipeline.stages import STAGES, EncodeFiles, FlowsFiles, PromptsFiles


def run(params: Params, root: Path = Path(".")) -> dict[str, float]:
    """Write data/encode/{schema.json, vocab.json, flows.jsonl, sft_pairs.jsonl} and reports/encode/metrics.json."""
    rng = random.Random(params.seed)
    rows = read_jsonl(root / FlowsFiles.base) + read_jsonl(root / FlowsFiles.augmented)
    graphs = [row["graph"] for row in rows]
    schema = infer_schema(strip_graph(g) for g in graphs)
    schema.save(root / EncodeFiles.schema)
    tokens = flow_tokens(schema)
    write_json(root / EncodeFiles.vocab, tokens)
    encoded = [
        {"id": row["id"], "text": encode_flow(row["graph"]), "policy_text": policy_text(row["graph"])}
        for row in tqdm(rows, desc="encoding flows", unit="flow")
    ]
    write_jsonl(root / EncodeFiles.flows, encoded)

    prompts = [row["prompt"] for row in read_jsonl(root / PromptsFiles.train)]
    augmented_ids = {row["id"] for row in read_jsonl(root / FlowsFiles.augmented)}
    pool = [row["policy_text"] for row in encoded if row["id"] in augmented_ids]
    pairs = ({"prompt": rng.choice(prompts), "completion": rng.choice(pool)} for _ in range(params.flows.n_sft_pairs))
    n_pairs = write_jsonl(root / EncodeFiles.sft_pairs, pairs)

    sample = rng.sample(range(len(rows)), min(len(rows), params.encode.report_sample))
    report = token_count_report([graphs[i] for i in sample], tokens)
    metrics = {"n_flows": len(rows), "n_flow_tokens": len(tokens), "n_sft_pairs": n_pairs, **report}
    write_json(root / STAGES["encode"].metrics, metrics)
    return metrics
