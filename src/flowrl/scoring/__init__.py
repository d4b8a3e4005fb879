"""Scoring a (prompt, flow) pair: the scorer interface (base), the preference simulator that stands in for rendering
and HPSv2 (simulator, with its prompt and flow features), the real ComfyUI path (comfyui) and a render fleet (fleet)."""
