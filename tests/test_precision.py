from textgen.hardware.precision import cpu_class, cpu_flags, resolve_precision


def test_auto_prefers_float16_on_gpu_then_native_bf16_then_float32():
    assert resolve_precision("auto", gpu_available=True, flags={"avx512_bf16"}) == "mixed_float16"
    assert resolve_precision("auto", gpu_available=False, flags={"avx512f", "avx512_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("auto", gpu_available=False, flags={"amx_bf16"}) == "mixed_bfloat16"
    assert resolve_precision("auto", gpu_available=False, flags={"avx2", "avx512f"}) == "float32"
    assert resolve_precision("auto", gpu_available=False, flags=set()) == "float32"


def test_explicit_precision_is_kept():
    assert resolve_precision("float32", gpu_available=True, flags={"avx512_bf16"}) == "float32"


def test_cpu_flags_parse_cpuinfo(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    assert cpu_flags(cpuinfo) == {"fpu", "avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == set()


def test_the_cpu_classes():
    assert cpu_class({"avx2", "avx512f", "avx512_bf16", "amx_bf16"}) == "amx_bf16"  # Intel Xeon
    assert cpu_class({"avx2", "avx512f", "avx512_bf16"}) == "avx512_bf16"  # AMD Zen 4
    assert cpu_class({"avx2", "fma"}) == "avx2"  # laptops, AMD Zen 1
    assert cpu_class({"avx2", "avx512f"}) == "avx2"  # AVX-512 without bf16: no native bfloat16
    assert cpu_class(set()) == "other"
