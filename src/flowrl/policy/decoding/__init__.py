"""Decoding the policy: constrained decoding (constrained, token_grammar, flow_parse), sampling loops (sampling),
dual-model guidance (guidance) and redrawing unusable flows (redraw)."""
