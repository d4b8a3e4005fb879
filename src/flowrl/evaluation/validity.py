"""What every evaluated method returns per prompt, and the one validity check applied to it."""

from __future__ import annotations

from dataclasses import dataclass

from flowrl.encoding.policy_view import FlowCheck, check_flow_text


@dataclass(frozen=True)
class Candidate:
    """One method's flow for one prompt: its encoded text, its API graph when the method already has it, and
    how many samples it took (policy methods redraw unusable flows, `flowrl.policy.decoding.redraw`)."""

    text: str
    graph: dict | None = None
    draws: int = 1


def check_candidate(candidate: Candidate, seed: int = 0) -> FlowCheck:
    """Decode (policy view or lossless text; seeds drawn from `seed`) and check a candidate: graph, valid, usable."""
    if candidate.graph is None:
        return check_flow_text(candidate.text, seed)
    from flowrl.comfy.usable import usable_problems
    from flowrl.comfy.validate import validate_graph

    invalid = validate_graph(candidate.graph)
    problems = invalid or usable_problems(candidate.graph)
    return FlowCheck(candidate.graph, not invalid, not problems, tuple(map(str, problems)))


def checked_graph(candidate: Candidate) -> dict | None:
    """The candidate's runnable API graph if it decodes and validates, else None (an invalid flow)."""
    check = check_candidate(candidate)
    return check.graph if check.valid else None
