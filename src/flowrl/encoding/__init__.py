"""Schema inference, the compact flow encoding and its exact decoder, and the flow vocabulary (docs/encoding.md)."""
