// exp and SiLU over a SIMD register type V (simd_avx2.h, simd_avx512.h). Internal linkage: each ISA file gets its
// own copy compiled with its own flags.
#pragma once

namespace dynamoe::cpu {
namespace {

// exp(x) to ~1 ulp over the float range: Cephes expf polynomial on the reduced argument, times 2^n.
template <class V>
inline typename V::Reg expPs(typename V::Reg x) {
  x = V::min(V::max(x, V::set1(-87.3365447504f)), V::set1(88.3762626647949f));
  const auto n = V::roundNearest(V::mul(x, V::set1(1.44269504088896341f)));
  auto r = V::fnmadd(n, V::set1(0.693359375f), x);
  r = V::fnmadd(n, V::set1(-2.12194440e-4f), r);
  auto p = V::set1(1.9875691500E-4f);
  p = V::fmadd(p, r, V::set1(1.3981999507E-3f));
  p = V::fmadd(p, r, V::set1(8.3334519073E-3f));
  p = V::fmadd(p, r, V::set1(4.1665795894E-2f));
  p = V::fmadd(p, r, V::set1(1.6666665459E-1f));
  p = V::fmadd(p, r, V::set1(5.0000001201E-1f));
  const auto y = V::add(V::fmadd(V::mul(p, r), r, r), V::set1(1.0f));
  return V::scaleByPow2(y, n);
}

// silu(g) = g / (1 + exp(-g))
template <class V>
inline typename V::Reg siluPs(typename V::Reg g) {
  return V::div(g, V::add(V::set1(1.0f), expPs<V>(V::sub(V::zero(), g))));
}

// out[i] = silu(gate[i]) x up[i], n a multiple of V::kLanes (a family's SwiGluFn).
template <class V>
void swiGluRows(const float* gate, const float* up, int n, float* out) {
  for (int i = 0; i < n; i += V::kLanes) V::store(out + i, V::mul(siluPs<V>(V::load(gate + i)), V::load(up + i)));
}

}  // namespace
}  // namespace dynamoe::cpu
