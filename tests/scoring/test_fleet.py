"""The ComfyUI render fleet against stub servers on 127.0.0.1: bounded in flight, retries elsewhere, a resumable cache."""

from __future__ import annotations

import collections

import pytest

from flowrl.comfy.client import ComfyUIError
from flowrl.scoring.comfyui import ComfyUIScorer
from flowrl.scoring.fleet import ScoreCache, load_servers, pair_key
from tests.scoring.graphs import simple_flow
from tests.scoring.render_stub import render_servers

FAST = {"timeout": 5, "retries": 0, "backoff": 0.01, "poll_interval": 0.005}


def image_score(image: bytes, prompt: str) -> float:
    """Stands in for HPSv2; fails the test when an image comes back for the wrong prompt."""
    assert image.startswith(b"\x89PNG\r\n\x1a\n") and b"prompt\0" + prompt.encode() in image, "image of another prompt"
    return len(prompt) + sum(map(ord, prompt)) / 1e4


def pairs(n: int) -> tuple[list[str], list[dict]]:
    return [f"prompt {i}" for i in range(n)], [simple_flow(steps=20 + i % 5) for i in range(n)]


def rendered(servers) -> collections.Counter:
    return collections.Counter(text for srv in servers for text in srv.rendered)


def test_fleet_with_a_dying_and_an_erroring_server_loses_nothing_and_renders_nothing_twice(tmp_path):
    prompts, flows = pairs(24)
    with render_servers({}, {}, {"die_after": 3}, {"mode": "errors"}) as servers:
        scorer = ComfyUIScorer(
            servers=[s.url for s in servers],
            in_flight=2,
            cache=str(tmp_path / "scores.jsonl"),
            image_scorer=image_score,
            **FAST,
        )
        scores = scorer.score(prompts, flows)
        assert scores == [image_score(b"\x89PNG\r\n\x1a\n" + b"prompt\0" + p.encode(), p) for p in prompts]
        counts = rendered(servers)
        assert sorted(counts) == sorted(prompts) and max(counts.values()) == 1
        assert all(s.max_active <= 2 for s in servers)
        assert servers[2].dead and not servers[3].rendered
        stats = scorer.stats
        assert stats["renders"] == 24 and stats["failures"] >= 3 and stats["renders_per_minute"] > 0
        assert servers[3].url in stats["dead_servers"] and servers[2].url in stats["dead_servers"]
        scorer.close()


def test_a_killed_run_resumes_from_the_cache_without_rendering_twice(tmp_path):
    prompts, flows = pairs(12)
    cache = tmp_path / "cache" / "scores.jsonl"
    with render_servers({}, {}) as servers:
        calls = []

        def dies_on_the_eighth(image: bytes, prompt: str) -> float:
            calls.append(prompt)
            if len(calls) == 8:
                raise KeyboardInterrupt  # the stage is killed while scoring
            return image_score(image, prompt)

        first = ComfyUIScorer(
            servers=[s.url for s in servers], in_flight=1, cache=str(cache), image_scorer=dies_on_the_eighth, **FAST
        )
        with pytest.raises(KeyboardInterrupt):
            first.score(prompts, flows)
        first.close()
        with cache.open("a") as f:
            f.write('{"key": "torn')  # killed mid-write
        assert len(ScoreCache(cache)) == 7
        before = rendered(servers)
        second = ComfyUIScorer(
            servers=[s.url for s in servers], in_flight=1, cache=str(cache), image_scorer=image_score, **FAST
        )
        assert second.score(prompts, flows) == [
            image_score(b"\x89PNG\r\n\x1a\n" + b"prompt\0" + p.encode(), p) for p in prompts
        ]
        again = rendered(servers) - before
        assert sum(again.values()) <= 12 - 7 and not set(again) & {p for p in calls[:7]}
        assert second.stats["cached"] == 7
        assert second.score(prompts, flows) and rendered(servers) - before == again  # all cached now
        second.close()


def test_equal_pairs_in_a_batch_render_once():
    with render_servers({}) as servers:
        scorer = ComfyUIScorer(servers=[servers[0].url], image_scorer=image_score, **FAST)
        scores = scorer.score(["a fox", "a fox", "a cat"], [simple_flow(), simple_flow(), simple_flow()])
        assert scores[0] == scores[1] and sum(rendered(servers).values()) == 2


def test_every_server_failing_raises_a_readable_error():
    with render_servers({"mode": "errors"}, {"mode": "errors"}) as servers:
        scorer = ComfyUIScorer(servers=[s.url for s in servers], image_scorer=image_score, max_failures=1, **FAST)
        with pytest.raises(ComfyUIError, match="every server failed|failed on .* attempts"):
            scorer.score(*pairs(3))


def test_servers_from_a_file_and_bad_settings(tmp_path):
    listing = tmp_path / "servers.txt"
    listing.write_text("# render fleet\nhttp://10.0.0.1:8188\n\nhttp://10.0.0.2:8188/  # second GPU box\n")
    assert load_servers(str(listing)) == ["http://10.0.0.1:8188", "http://10.0.0.2:8188"]
    with pytest.raises(ComfyUIError, match="not a file"):
        load_servers(str(tmp_path / "absent.txt"))
    with pytest.raises(ComfyUIError, match="named twice"):
        load_servers(["http://a:1", "http://a:1/"])
    with pytest.raises(ComfyUIError, match="must start with http.*servers.txt"):
        listing.write_text("10.0.0.1:8188\n")
        load_servers(str(listing))
    with pytest.raises(ComfyUIError, match="no ComfyUI servers"):
        load_servers([])
    from flowrl.scoring.base import ScorerError

    with pytest.raises(ScorerError, match="not both"):
        ComfyUIScorer("http://a:1", servers=["http://b:1"], image_scorer=image_score)


def test_pair_key_is_content_addressed():
    assert pair_key("p", {"a": 1, "b": 2}) == pair_key("p", {"b": 2, "a": 1})
    assert pair_key("p", {"a": 1}) != pair_key("q", {"a": 1}) != pair_key("p", {"a": 1}, "hps-v2.0")
