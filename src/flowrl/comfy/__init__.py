"""The ComfyUI graph model: API graphs (graph), UI import (ui), node catalog (catalog), validation (validate)."""
