"""Export and acceleration: ONNX graphs cut at the real-time loop's seams (onnx_export), their metadata
and cache (metadata, cache), backends that run them behind the FommPuppeteer stage interface (backends,
ort_runner, quantize, tensorrt), the fused warp (fused_warp, triton_warp) and the benchmarks (bench,
bench_gpu)."""
