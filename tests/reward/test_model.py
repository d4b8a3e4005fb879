"""One surrogate: training lowers the MSE loss; prediction is batched and order-preserving."""

from __future__ import annotations

import numpy as np

from flowrl.params.model import RewardConfig
from flowrl.reward.encoder import build_surrogate, load_reward_tokenizer
from flowrl.reward.model import PairCollator, PairDataset, format_pair, predict_texts, train_surrogate
from tests.reward.conftest import make_rows

CFG = RewardConfig(source="tiny", bf16=False, epochs=3, batch_size=16, learning_rate=1e-3, max_length=64)


def _data(n: int, seed: int) -> PairDataset:
    rows = make_rows(n, seed)
    return PairDataset([r["prompt"] for r in rows], [r["flow"] for r in rows], [r["score"] for r in rows])


def test_training_lowers_loss(tmp_path):
    tokenizer = load_reward_tokenizer(CFG)
    model = build_surrogate(CFG, len(tokenizer), seed=0)
    stats = train_surrogate(model, tokenizer, _data(160, 0), CFG, tmp_path / "work", seed=0)
    assert stats["final_loss"] < stats["first_loss"]
    assert stats["resumed_from_step"] == 0
    assert any(p.name.startswith("checkpoint-") for p in (tmp_path / "work").iterdir())  # per-epoch checkpoint


def test_collator_truncates_and_labels():
    tokenizer = load_reward_tokenizer(CFG)
    batch = PairCollator(tokenizer, max_length=12)(
        [{"text": format_pair("p " * 50, "f"), "label": 0.5}, {"text": "x", "label": 1.0}]
    )
    assert batch["input_ids"].shape == (2, 12)
    assert batch["labels"].tolist() == [0.5, 1.0]


def test_predict_texts_keeps_input_order_across_batches():
    tokenizer = load_reward_tokenizer(CFG)
    model = build_surrogate(CFG, len(tokenizer), seed=0)
    texts = [format_pair("a cat " * (i % 5 + 1), f"n{i} KSampler") for i in range(11)]
    batched = predict_texts(model, tokenizer, texts, max_length=64, batch_size=3, bf16=False)
    single = np.array([predict_texts(model, tokenizer, [t], 64, 1, False)[0] for t in texts])
    assert batched.shape == (11,)
    np.testing.assert_allclose(batched, single, atol=1e-5)
