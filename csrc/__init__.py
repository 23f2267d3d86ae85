# Marker so the C++/CUDA sources ship inside the package (fastvit_analysis.csrc)
# for the compile-on-first-use fallback.
