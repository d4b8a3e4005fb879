"""Data expectations for the components catalog."""

import pytest

from flowrl.comfy import components as C
from flowrl.comfy.catalog import load_catalog


def test_names_unique_and_known_families_and_styles():
    names = [c.name for c in C.CHECKPOINTS] + [l.name for l in C.LORAS]
    assert len(names) == len(set(names))
    assert {c.family for c in C.CHECKPOINTS} == set(C.FAMILIES)
    assert all(c.style in C.STYLES for c in C.CHECKPOINTS)
    assert all(l.style in C.STYLES for l in C.LORAS)


def test_every_lora_family_has_checkpoints():
    checkpoint_families = {c.family for c in C.CHECKPOINTS if not c.refiner}
    for lora in C.LORAS:
        assert lora.family in checkpoint_families, lora
        assert lora.weight_min <= lora.weight_max
        assert -2.0 <= lora.weight_min and lora.weight_max <= 2.0


def test_lookup_and_refiner():
    assert C.checkpoint_info("dreamshaper_8.safetensors").family == "sd15"
    assert C.checkpoint_info("sd_xl_refiner_1.0.safetensors").refiner
    assert C.lora_info("add-detail-xl.safetensors").family == "sdxl"
    assert C.checkpoint_info("missing.safetensors") is None
    assert C.lora_info("missing.safetensors") is None


def test_lora_fits_only_same_architecture():
    sd15_lora, xl_lora = C.lora_info("add_detail.safetensors"), C.lora_info("add-detail-xl.safetensors")
    assert C.lora_fits(sd15_lora, "sd15") and not C.lora_fits(sd15_lora, "sdxl")
    assert C.lora_fits(xl_lora, "pony") and not C.lora_fits(xl_lora, "sd15")


@pytest.mark.parametrize("family", C.FAMILIES)
def test_family_ranges_sane_and_known_to_comfy(family):
    ranges = C.family_ranges(family)
    ksampler = load_catalog().get("KSampler").inputs
    assert 1 <= ranges.steps[0] <= ranges.steps[1] <= 60
    assert 0 <= ranges.cfg[0] <= ranges.cfg[1] <= 15
    assert all(w % 8 == 0 and h % 8 == 0 for w, h in ranges.resolutions)
    assert sum(w for _, _, w in ranges.samplers) == pytest.approx(1.0, abs=0.05)
    for sampler, scheduler, _ in ranges.samplers:
        assert sampler in C.SAMPLERS and sampler in ksampler["sampler_name"].choices
        assert scheduler in C.SCHEDULERS and scheduler in ksampler["scheduler"].choices


def test_fast_families_use_few_steps_and_low_cfg():
    for family in ("sdxl_turbo", "sdxl_lightning"):
        assert C.family_ranges(family).steps[1] <= 8
        assert C.family_ranges(family).cfg[1] <= 2.5
    assert C.family_ranges("sd15").steps[0] >= 15


def test_unknown_family_raises():
    with pytest.raises(KeyError, match="unknown checkpoint family"):
        C.family_ranges("sd3")
