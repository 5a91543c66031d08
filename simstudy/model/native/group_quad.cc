// The per-observation part of the SS-MELSM likelihood as an XLA FFI kernel (CPU).
//
// Observations are sorted by group; group j's rows are [offsets[j], offsets[j+1]), padded to a
// multiple of LANES with y = 0 and basis rows 0. Each group's design is written in a per-group
// basis x_i (b columns, stored transposed: basis_t[b][i]), so that for observation i in group j
//
//   mu_i = x_i . alpha_j,   -2 log sigma_i(c) = -2 x_i . gamma_j - 2 sum_{k in c} x_i . lam_jk
//
// and for each indicator combination c (bit K-1-k of c is indicator k, the row order of
// itertools.product((0, 1), repeat=K)) the kernel returns
//
//   quad[j][c] = sum_i r_i^2 e^{-2 x_i.gamma_j} m_ic,  m_ic = prod_{k in c} e^{-2 x_i.lam_jk},
//   S[j][c][b] = sum_i r_i^2 e^{-2 x_i.gamma_j} m_ic x_ib,
//   T[j][c][b] = sum_i r_i   e^{-2 x_i.gamma_j} m_ic x_ib,        r_i = y_i - mu_i,
//
// from which d quad / d alpha = -2 T, d quad / d gamma = -2 S, d quad / d lam_k = -2 [k in c] S
// (the vector-Jacobian product is three contractions, done in JAX). Padded rows have r = 0
// and add exactly 0. varies[j][p] = 0 says predictor p (0: gamma, 1 + k: lam_k) is the
// constant coef[0] in group j (basis column 0 is ones there and the other coefficients are
// structurally 0): its exponential is then taken once per group instead of once per row.
//
// Every input may carry leading batch dimensions (jax.vmap with vmap_method="expand_dims":
// the same number on every input, each of size 1 or the batch size).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr int LANES = 8;
typedef double vec __attribute__((vector_size(8 * LANES)));
typedef long long ivec __attribute__((vector_size(8 * LANES)));

inline vec broadcast(double v) { return vec{} + v; }

// exp on LANES doubles: x = n ln2 + r with |r| <= ln2 / 2 (Cody-Waite; the high part of ln2
// has 11 trailing zero bits, so n * LN2_HI is exact), exp(r) by its Taylor polynomial to
// degree 13 (truncation below 2e-18 relative), times 2^n written into the exponent bits.
// Within a few ulp of libm; 0 below x = -708.39 (where libm returns subnormals), inf above
// 709.78, NaN for NaN.
inline vec vexp(vec x) {
  const ivec lo = x < -708.39;
  const ivec hi = x > 709.78;
  const ivec nan = x != x;
  vec xc = lo ? broadcast(-708.39) : x;
  xc = hi ? broadcast(709.78) : xc;
  xc = nan ? vec{} : xc;
  const double shifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  vec n = xc * 1.4426950408889634 + shifter;
  n -= shifter;
  vec r = xc - n * 0.693145751953125;
  r = r - n * 1.4286068203094173e-06;
  vec p = broadcast(1.0 / 6227020800.0);
  p = p * r + 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  const ivec bits = (__builtin_convertvector(n, ivec) + 1023) << 52;
  vec scale;
  std::memcpy(&scale, &bits, sizeof scale);
  vec out = p * scale;
  out = lo ? vec{} : out;
  out = hi ? broadcast(__builtin_inf()) : out;
  return nan ? x : out;
}

inline double hsum(vec v) {
  double s = 0.0;
  for (int i = 0; i < LANES; ++i) s += v[i];
  return s;
}

struct Group {
  const double* y;        // (Np,)
  const double* xt;       // (b, Np)
  const int64_t* off;     // (J + 1,)
  const int64_t* varies;  // (J, 1 + K)
  const double* alpha;    // (J, b)
  const double* gamma;    // (J, b)
  const double* lam;      // (J, K, b)
  double* quad;           // (J, C)
  double* s_out;          // (J, C, b)
  double* t_out;          // (J, C, b)
};

template <int B, int K>
void accumulate(const Group& d, int64_t J, int64_t Np) {
  constexpr int C = 1 << K;
  for (int64_t j = 0; j < J; ++j) {
    const double* a = d.alpha + j * B;
    const double* g = d.gamma + j * B;
    const double* l = d.lam + j * K * B;
    const int64_t* vr = d.varies + j * (1 + K);
    // the exponentials of predictors that are constant in this group
    const vec ew_const = broadcast(std::exp(-2.0 * g[0]));
    vec ez_const[K];
    for (int k = 0; k < K; ++k) ez_const[k] = broadcast(std::exp(-2.0 * l[k * B]));
    vec q[C], S[C][B], T[C][B];
    for (int c = 0; c < C; ++c) {
      q[c] = vec{};
      for (int b = 0; b < B; ++b) S[c][b] = T[c][b] = vec{};
    }
    for (int64_t i = d.off[j]; i < d.off[j + 1]; i += LANES) {
      vec x[B], r;
      for (int b = 0; b < B; ++b) std::memcpy(&x[b], d.xt + b * Np + i, sizeof(vec));
      std::memcpy(&r, d.y + i, sizeof(vec));
      vec w = vec{}, z[K];
      for (int k = 0; k < K; ++k) z[k] = vec{};
      for (int b = 0; b < B; ++b) {
        r -= x[b] * a[b];
        w += x[b] * (-2.0 * g[b]);
        for (int k = 0; k < K; ++k) z[k] += x[b] * (-2.0 * l[k * B + b]);
      }
      const vec rw = r * (vr[0] ? vexp(w) : ew_const);
      const vec v0 = r * rw;
      vec e[K];
      for (int k = 0; k < K; ++k) e[k] = vr[1 + k] ? vexp(z[k]) : ez_const[k];
      for (int c = 0; c < C; ++c) {
        vec vc = v0, tc = rw;
        for (int k = 0; k < K; ++k)
          if ((c >> (K - 1 - k)) & 1) {
            vc *= e[k];
            tc *= e[k];
          }
        q[c] += vc;
        for (int b = 0; b < B; ++b) {
          S[c][b] += vc * x[b];
          T[c][b] += tc * x[b];
        }
      }
    }
    for (int c = 0; c < C; ++c) {
      d.quad[j * C + c] = hsum(q[c]);
      for (int b = 0; b < B; ++b) {
        d.s_out[(j * C + c) * B + b] = hsum(S[c][b]);
        d.t_out[(j * C + c) * B + b] = hsum(T[c][b]);
      }
    }
  }
}

using Kernel = void (*)(const Group&, int64_t, int64_t);

template <int K>
Kernel kernel_for_width(int64_t b) {
  switch (b) {
    case 1: return accumulate<1, K>;
    case 2: return accumulate<2, K>;
    case 3: return accumulate<3, K>;
    case 4: return accumulate<4, K>;
    case 5: return accumulate<5, K>;
    case 6: return accumulate<6, K>;
    case 7: return accumulate<7, K>;
    case 8: return accumulate<8, K>;
    default: return nullptr;
  }
}

Kernel kernel_for(int64_t b, int64_t K) {
  switch (K) {
    case 1: return kernel_for_width<1>(b);
    case 2: return kernel_for_width<2>(b);
    case 3: return kernel_for_width<3>(b);
    default: return nullptr;
  }
}

// Leading (batch) dimensions of a buffer whose last `core` dimensions are its own.
template <typename Dims>
std::vector<int64_t> batch_dims(const Dims& dims, size_t core) {
  return std::vector<int64_t>(dims.begin(), dims.begin() + (dims.size() - core));
}

ffi::Error GroupQuadImpl(ffi::Buffer<ffi::F64> y, ffi::Buffer<ffi::F64> basis_t, ffi::Buffer<ffi::S64> offsets,
                         ffi::Buffer<ffi::S64> varies, ffi::Buffer<ffi::F64> alpha, ffi::Buffer<ffi::F64> gamma,
                         ffi::Buffer<ffi::F64> lam, ffi::ResultBuffer<ffi::F64> quad,
                         ffi::ResultBuffer<ffi::F64> s_out, ffi::ResultBuffer<ffi::F64> t_out) {
  const auto xd = basis_t.dimensions();
  const auto ld = lam.dimensions();
  const auto od = offsets.dimensions();
  if (xd.size() < 2 || ld.size() < 3 || od.size() < 1 || y.dimensions().size() < 1)
    return ffi::Error::InvalidArgument("simstudy_group_quad: inputs of too low rank");
  const int64_t b = xd[xd.size() - 2], Np = xd[xd.size() - 1];
  const int64_t K = ld[ld.size() - 2], J = od[od.size() - 1] - 1;
  const Kernel kernel = kernel_for(b, K);
  if (kernel == nullptr)
    return ffi::Error::InvalidArgument("simstudy_group_quad: basis width " + std::to_string(b) + " or K " +
                                       std::to_string(K) + " outside 1..8 / 1..3");
  if (Np % LANES != 0) return ffi::Error::InvalidArgument("simstudy_group_quad: rows not padded to 8");
  // batch shape: the same number of leading dimensions on every input, each 1 or the size
  const std::vector<std::vector<int64_t>> in_batch = {
      batch_dims(y.dimensions(), 1), batch_dims(xd, 2),       batch_dims(od, 1),        batch_dims(varies.dimensions(), 2),
      batch_dims(alpha.dimensions(), 2), batch_dims(gamma.dimensions(), 2), batch_dims(ld, 3)};
  const size_t nb = in_batch[0].size();
  std::vector<int64_t> shape(nb, 1);
  for (const auto& bd : in_batch) {
    if (bd.size() != nb) return ffi::Error::InvalidArgument("simstudy_group_quad: inputs with different batch ranks");
    for (size_t k = 0; k < nb; ++k) {
      if (bd[k] != 1 && shape[k] != 1 && bd[k] != shape[k])
        return ffi::Error::InvalidArgument("simstudy_group_quad: batch dimensions do not broadcast");
      if (bd[k] != 1) shape[k] = bd[k];
    }
  }
  int64_t total = 1;
  for (int64_t s : shape) total *= s;
  const int64_t C = int64_t{1} << K;
  const int64_t sizes[7] = {Np, b * Np, J + 1, J * (1 + K), J * b, J * b, J * K * b};
  for (int64_t flat = 0; flat < total; ++flat) {
    int64_t at[7] = {0, 0, 0, 0, 0, 0, 0};  // element offset of this batch entry in each input
    for (int m = 0; m < 7; ++m) {
      int64_t rest = flat, index = 0, stride = 1;
      for (size_t k = nb; k-- > 0;) {
        const int64_t coord = rest % shape[k];
        rest /= shape[k];
        if (in_batch[m][k] != 1) index += coord * stride;
        stride *= in_batch[m][k];
      }
      at[m] = index * sizes[m];
    }
    const Group d{y.typed_data() + at[0],     basis_t.typed_data() + at[1], offsets.typed_data() + at[2],
                  varies.typed_data() + at[3], alpha.typed_data() + at[4],   gamma.typed_data() + at[5],
                  lam.typed_data() + at[6],    quad->typed_data() + flat * J * C,
                  s_out->typed_data() + flat * J * C * b, t_out->typed_data() + flat * J * C * b};
    if (d.off[0] != 0 || d.off[J] != Np)
      return ffi::Error::InvalidArgument("simstudy_group_quad: offsets must run from 0 to the padded row count");
    kernel(d, J, Np);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(SimstudyGroupQuad, GroupQuadImpl,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::F64>>()   // y
                                  .Arg<ffi::Buffer<ffi::F64>>()   // basis_t
                                  .Arg<ffi::Buffer<ffi::S64>>()   // offsets
                                  .Arg<ffi::Buffer<ffi::S64>>()   // varies
                                  .Arg<ffi::Buffer<ffi::F64>>()   // alpha
                                  .Arg<ffi::Buffer<ffi::F64>>()   // gamma
                                  .Arg<ffi::Buffer<ffi::F64>>()   // lam
                                  .Ret<ffi::Buffer<ffi::F64>>()   // quad
                                  .Ret<ffi::Buffer<ffi::F64>>()   // S
                                  .Ret<ffi::Buffer<ffi::F64>>());  // T
