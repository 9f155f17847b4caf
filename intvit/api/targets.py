"""``intvit targets``: the target presets, with the int8 GEMM micro-kernels each one gets."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class TargetRow:
    preset: str
    description: str
    #: the int8 GEMM micro-kernels the preset's features allow, best first; empty: TVM's
    #: default lowering of the GEMMs
    gemm_kernels: tuple[str, ...]
    target: dict


def target_rows() -> list[TargetRow]:
    from intvit.deploy.targets import get_preset, list_presets
    from intvit.schedules.intrinsics import gemm_kernels_for

    rows = []
    for name in list_presets():
        preset = get_preset(name)
        kernels = tuple(k.name for k in gemm_kernels_for(preset.target))
        rows.append(
            TargetRow(
                preset=name,
                description=preset.description,
                gemm_kernels=kernels,
                target=dict(preset.target),
            )
        )
    return rows


def format_targets(rows: list[TargetRow]) -> str:
    lines = [f"{'preset':<16} {'description':<40} {'int8 GEMM kernels':<28} target"]
    for row in rows:
        gemm = "/".join(row.gemm_kernels) or "TVM default"
        lines.append(f"{row.preset:<16} {row.description:<40} {gemm:<28} {row.target}")
    return "\n".join(lines)
