/* units.inc.c: the unit functions, their derivatives and the output losses on vectors, for one
 * (REAL, ISA); included by kernels.inc.c. Adding an activation or a loss: its name in the list in
 * bpfast.h, its math here, its name and NumPy reference in bpfast/units.py. */

/* Block functions work on k vectors at once, one step of the math across all k before the next:
 * the k dependency chains then interleave and the core runs them side by side, where k separate
 * calls would each wait on their own chain (vexp is ~20 dependent operations). Every vector gets
 * exactly the operations of a call on it alone. k must be a constant where they are inlined (the
 * loops over it unroll and their arrays stay in registers), at most BP_BLOCK. */
#define BP_BLOCK 16
#if defined(__clang__)
/* No pragma for clang: with one ("unroll" or "unroll 16") it left loops of 8 vectors, arrays on
   the stack, in W5's kernel (reporting loops unrolled by 16 "with run-time trip count" where k was
   still a parameter), and trained W5 1.6-1.9x slower than GCC's build; without, 0.99-1.27x
   (session 21). */
#define EACH(i, k) for (int i = 0; i < (k); i++)
#else
#define EACH(i, k) _Pragma("GCC unroll 16") for (int i = 0; i < (k); i++)
#endif
#define ALWAYS_INLINE inline __attribute__((always_inline))

/* exp(x) of each of v[0 .. k) as two factors, exp(x) = p[i] * scale[i], vectorised, in one of two
 * ways. Inputs are clamped to the range where the result is a normal number. Error: a few ulp
 * (tested against libm in tests/test_kernels.py).
 *
 * With a one-instruction lane permute (float32 on AVX2 and AVX-512: VPERMUTE_F32), a table:
 * x = (8n + j) ln2/8 + r with 8n + j = 8x / ln2 rounded to the nearest integer, so |r| <= ln2/16;
 * scale = 2^(j/8) 2^n, 2^(j/8) from an 8-entry table held in a register and 2^n added to its
 * exponent bits, and p = exp(r) = 1 + r (c1 + r (c2 + r c3)), a minimax cubic (relative error
 * 2.9e-8 with its float32 coefficients). The logistic unit then takes 7 multiply-adds a vector,
 * against 11 with a polynomial over |r| <= ln2/2; those were its limit (the FMA pipes, not
 * latency: a span of 8 vectors of W5's forward pass took 98-101 cycles on Zen 5 with avx2, 136
 * multiply-adds at 2 a cycle, session 22).
 *
 * Otherwise: x = n ln2 + r with n = x / ln2 rounded to the nearest integer, so |r| <= ln2/2,
 * exp(r) = 1 + r (1 + r P(r)) by a polynomial, scale = 2^n exactly through the exponent bits. The
 * logistic unit takes 17 operations a vector this way, against 25 with a floor, a conversion and
 * unfused steps (callgrind, W5's population: 44.6M -> 40.9M instructions; its logistic units were
 * a third of its time). */
#if !BP_DOUBLE && defined(VPERMUTE_F32)
static ALWAYS_INLINE void FN(vexp_parts_block)(const VREAL *v, VREAL *p, VREAL *scale,
                                               const int k)
{
    const REAL hi = 88.0f, lo = -87.0f;
    /* ln2/8 in two parts; the first has few bits, so n8 * ln2_8_hi is exact (|n8| < 2^10) */
    const REAL ln2_8_hi = 0.693359375f / 8, ln2_8_lo = -2.12194440e-4f / 8;
    /* minimax for exp(r) on |r| <= ln2/16 (bench/results/2026-12-02-session23.md) */
    const REAL c1 = 0x1.000002p+0f, c2 = 0x1.000884p-1f, c3 = 0x1.5548e4p-3f;
    /* 2^(j/8) at lane j mod 8, for a permute that reads an index's low log2(VW) bits */
    static const REAL exp2_eighths[16] __attribute__((aligned(64))) = {
        0x1p+0f, 0x1.172b84p+0f, 0x1.306fe0p+0f, 0x1.4bfdaep+0f,
        0x1.6a09e6p+0f, 0x1.8ace54p+0f, 0x1.ae89fap+0f, 0x1.d5818ep+0f,
        0x1p+0f, 0x1.172b84p+0f, 0x1.306fe0p+0f, 0x1.4bfdaep+0f,
        0x1.6a09e6p+0f, 0x1.8ace54p+0f, 0x1.ae89fap+0f, 0x1.d5818ep+0f};
    const VREAL table = FN(vload)(exp2_eighths);
    /* z = 8x / ln2 + 1.5 * 2^23: at that magnitude the sum rounds to an integer, m + 1.5 * 2^23
       with m = 8n + j (|m| < 2^10), and z's low bits are m's two's complement: j in the lowest 3,
       n above them. Shifted up by 20 and masked they are n in the exponent field. */
    const REAL shifter = 0x1.8p23f;
    VREAL x[BP_BLOCK], z[BP_BLOCK];
    EACH(i, k) x[i] = VMAX(FN(vsplat)(lo), VMIN(FN(vsplat)(hi), v[i])); /* (NaN stays NaN) */
    EACH(i, k) z[i] = VFMA(x[i], FN(vsplat)((REAL)11.5415603271117073), FN(vsplat)(shifter));
    EACH(i, k) {
        const VREAL m = z[i] - shifter; /* exactly */
        x[i] = VFMA(m, FN(vsplat)(-ln2_8_hi), x[i]); /* exact */
        x[i] = VFMA(m, FN(vsplat)(-ln2_8_lo), x[i]); /* r */
    }
    EACH(i, k) p[i] = VFMA(FN(vsplat)(c3), x[i], FN(vsplat)(c2));
    EACH(i, k) p[i] = VFMA(p[i], x[i], FN(vsplat)(c1));
    EACH(i, k) p[i] = VFMA(p[i], x[i], FN(vsplat)(1));
    EACH(i, k) {
        VBITS bits, root;
        memcpy(&bits, &z[i], sizeof bits);
        const VREAL root_f = VPERMUTE_F32(table, bits);
        memcpy(&root, &root_f, sizeof root);
        bits = root + ((bits << 20) & 0xff800000u); /* 2^(j/8) * 2^n: n added to its exponent */
        memcpy(&scale[i], &bits, sizeof scale[i]);
    }
}
#else
static ALWAYS_INLINE void FN(vexp_parts_block)(const VREAL *v, VREAL *p, VREAL *scale,
                                               const int k)
{
#if BP_DOUBLE
    const REAL hi = 708.0, lo = -708.0;
    const REAL ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
    static const REAL coef[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                                1.0 / 3628800.0, 1.0 / 362880.0, 1.0 / 40320.0, 1.0 / 5040.0,
                                1.0 / 720.0, 1.0 / 120.0, 1.0 / 24.0, 1.0 / 6.0, 0.5};
    /* Taylor series to r^13: the remainder is below 1e-17 for |r| <= ln2/2. */
    enum { TERMS = 12, MANTISSA = 52, BIAS = 1023 };
    const REAL shifter = 0x1.8p52 + BIAS;
#else
    const REAL hi = 88.0f, lo = -87.0f;
    const REAL ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    /* Cephes expf's minimax polynomial. */
    static const REAL coef[] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                                4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
    enum { TERMS = 6, MANTISSA = 23, BIAS = 127 };
    const REAL shifter = 0x1.8p23f + BIAS;
#endif
    /* z = x / ln2 + shifter: at that magnitude the sum rounds to an integer, n + shifter (|n| <
       2^10), whose low bits hold n + BIAS, which shifted up are the exponent field of 2^n (n + BIAS
       is in [1, 2 BIAS] in the clamped range) */
    VREAL x[BP_BLOCK], z[BP_BLOCK];
    EACH(i, k) x[i] = VMAX(FN(vsplat)(lo), VMIN(FN(vsplat)(hi), v[i])); /* (NaN stays NaN) */
    EACH(i, k) z[i] = VFMA(x[i], FN(vsplat)((REAL)1.44269504088896341), FN(vsplat)(shifter));
    EACH(i, k) {
        const VREAL fn = z[i] - shifter; /* n, exactly */
        x[i] = VFMA(fn, FN(vsplat)(-ln2_hi), x[i]); /* exact: ln2_hi has few bits */
        x[i] = VFMA(fn, FN(vsplat)(-ln2_lo), x[i]); /* r */
    }
    EACH(i, k) p[i] = FN(vsplat)(coef[0]);
    for (int term = 1; term < TERMS; term++)
        EACH(i, k) p[i] = VFMA(p[i], x[i], FN(vsplat)(coef[term]));
    EACH(i, k) {
        p[i] = VFMA(x[i], VFMA(x[i], p[i], FN(vsplat)(1)), FN(vsplat)(1));
        VBITS bits;
        memcpy(&bits, &z[i], sizeof bits);
        bits <<= MANTISSA;
        memcpy(&scale[i], &bits, sizeof scale[i]);
    }
}
#endif

/* exp of each of v[0 .. k), in place (a block function: see above) */
static ALWAYS_INLINE void FN(vexp_block)(VREAL *v, const int k)
{
    VREAL p[BP_BLOCK], scale[BP_BLOCK];
    FN(vexp_parts_block)(v, p, scale, k);
    EACH(i, k) v[i] = p[i] * scale[i];
}

static inline VREAL FN(vexp)(VREAL x)
{
    FN(vexp_block)(&x, 1);
    return x;
}

/* The logistic function of each of y[0 .. k), in place: 1 / (1 + exp(-y)), the 1 added in the
   rounding of the product p * scale (where scale is 2^n that product is exact, so the sum is the
   same number as 1 + vexp(-y)) */
static ALWAYS_INLINE void FN(vlogistic_block)(VREAL *y, const int k)
{
    VREAL e[BP_BLOCK], p[BP_BLOCK], scale[BP_BLOCK];
    EACH(i, k) e[i] = -y[i];
    FN(vexp_parts_block)(e, p, scale, k);
    EACH(i, k) y[i] = (REAL)1 / VFMA(p[i], scale[i], FN(vsplat)(1));
}

/* ln(x) for positive normal x, vectorised: x = 2^k m with m in [sqrt(1/2), sqrt(2)), and
 * ln m = 2 atanh(s) = 2 (s + s^3/3 + s^5/5 + ...), s = (m - 1)/(m + 1), |s| < 0.172, to the term
 * below the precision's ulp. Only the cross-entropy error uses it (never a gradient). */
static inline VREAL FN(vlog)(VREAL x)
{
#if BP_DOUBLE
    enum { MANTISSA = 52, BIAS = 1023, TERMS = 11 };
    const REAL ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
#else
    enum { MANTISSA = 23, BIAS = 127, TERMS = 5 };
    const REAL ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
#endif
    VINT bits;
    memcpy(&bits, &x, sizeof bits);
    VINT k = (bits >> MANTISSA) - BIAS;
    const VINT m_bits = (bits & (((ITYPE)1 << MANTISSA) - 1)) | ((ITYPE)BIAS << MANTISSA);
    VREAL m;
    memcpy(&m, &m_bits, sizeof m);                       /* in [1, 2) */
    const VINT high = m > (REAL)1.41421356237309504880;  /* -1 where m >= sqrt(2) */
    m = FN(vselect)(high, m * (REAL)0.5, m);
    k -= high;
    const VREAL s = (m - (REAL)1) / (m + (REAL)1), s2 = s * s;
    VREAL p = FN(vsplat)((REAL)1 / (2 * TERMS + 1));
    for (int i = TERMS - 1; i >= 0; i--)
        p = p * s2 + (REAL)1 / (REAL)(2 * i + 1);
    const VREAL kf = __builtin_convertvector(k, VREAL);
    return kf * ln2_hi + (kf * ln2_lo + (REAL)2 * s * p);
}

/* tanh(x), vectorised (Cephes): an odd polynomial (float) or rational function (double) of x for
 * |x| < 0.625, else 1 - 2 / (exp(2|x|) + 1) with the sign of x. Error: a few ulp. */
static inline VREAL FN(vtanh)(VREAL x)
{
    const VREAL ax = FN(vselect)(x < 0, -x, x);
    const VREAL z = x * x;
#if BP_DOUBLE
    VREAL num = FN(vsplat)(-9.64399179425052238628e-1);
    num = num * z + -9.92877231001918586564e1;
    num = num * z + -1.61468768441708447952e3;
    VREAL den = z + 1.12811678491632931402e2;
    den = den * z + 2.23548839060100448583e3;
    den = den * z + 4.84406305325125486048e3;
    const VREAL small = x + x * z * (num / den);
#else
    VREAL p = FN(vsplat)(-5.70498872745e-3f);
    p = p * z + 2.06390887954e-2f;
    p = p * z + -5.37397155531e-2f;
    p = p * z + 1.33314422036e-1f;
    p = p * z + -3.33332819422e-1f;
    const VREAL small = p * z * x + x;
#endif
    const VREAL big = (REAL)1 - (REAL)2 / (FN(vexp)(ax + ax) + (REAL)1);
    return FN(vselect)(ax < (REAL)0.625, small, FN(vselect)(x < 0, -big, big));
}

/* The unit's output function on one vector of total inputs (softmax: see softmax_omp). */
static inline VREAL FN(vactivate)(VREAL x, int activation)
{
    switch (activation) {
    case BP_LOGISTIC:
        FN(vlogistic_block)(&x, 1);
        return x;
    case BP_TANH:
        return FN(vtanh)(x);
    case BP_RELU: /* x < 0, not x > 0: a NaN passes through (and is noticed) */
        return FN(vselect)(x < 0, FN(vsplat)(0), x);
    case BP_LEAKY_RELU:
        return FN(vselect)(x < 0, x * (REAL)BP_LEAKY_SLOPE, x);
    default:
        return x;
    }
}

/* vactivate of each of y[0 .. k) (a block function: see vexp_block). */
static ALWAYS_INLINE void FN(vactivate_block)(VREAL *y, const int k, int activation)
{
    if (activation == BP_LOGISTIC) {
        FN(vlogistic_block)(y, k);
    } else {
        EACH(i, k) y[i] = FN(vactivate)(y[i], activation);
    }
}

/* vactivate of each of y[0 .. n): blocks of ACTIVATE_BLOCK vectors, a block of half as many, then
   one at a time. 8 chains side by side (against 4): the whole-net loop's W1 -5% on avx2 and -8% on
   baseline (Zen 3), where a span's units wait on each other's activations. */
#define ACTIVATE_BLOCK 8
static ALWAYS_INLINE void FN(vactivate_span)(VREAL *y, int64_t n, int activation)
{
    int64_t j = 0;
    for (; j + ACTIVATE_BLOCK <= n; j += ACTIVATE_BLOCK)
        FN(vactivate_block)(y + j, ACTIVATE_BLOCK, activation);
    if (j + ACTIVATE_BLOCK / 2 <= n) {
        FN(vactivate_block)(y + j, ACTIVATE_BLOCK / 2, activation);
        j += ACTIVATE_BLOCK / 2;
    }
    for (; j < n; j++)
        y[j] = FN(vactivate)(y[j], activation);
}

/* dy/dx of the unit, in terms of its saved output y. */
static inline VREAL FN(vderivative)(VREAL y, int activation)
{
    switch (activation) {
    case BP_LOGISTIC: /* y = 1/(1+exp(-x)): y(1-y) */
        return y * ((REAL)1 - y);
    case BP_TANH:     /* y = tanh(x): 1 - y^2 */
        return (REAL)1 - y * y;
    case BP_RELU:
        return FN(vselect)(y > 0, FN(vsplat)(1), FN(vsplat)(0));
    case BP_LEAKY_RELU:
        return FN(vselect)(y > 0, FN(vsplat)(1), FN(vsplat)((REAL)BP_LEAKY_SLOPE));
    default:
        return FN(vsplat)(1);
    }
}

/* d[j] *= the unit's derivative at its output y[j], j < n (a span, or a whole row's vectors): the
   switch taken once for the n vectors (inside the loop, the compiler keeps one switch a vector),
   the same product each. */
static ALWAYS_INLINE void FN(vderivative_times)(VREAL *d, const VREAL *y, const int n,
                                                int activation)
{
    switch (activation) {
#define TIMES(id, name)                                                                          \
    case id:                                                                                     \
        EACH(j, n) d[j] = d[j] * FN(vderivative)(y[j], id);                                     \
        break;
        BP_ACTIVATIONS(TIMES)
#undef TIMES
    }
}

/* The caller's OUTPUT_DELTAS(config, activation) (a loop of output_delta calls) with, for the
   paper's outputs (logistic units, summed squared error, no case weights), output_delta's
   branches on the loss and the case weights decided here, once, instead of once a vector: the
   constants of `paper` fold them away, and the operations are the same. */
#define OUTPUT_DELTAS_DECIDED(cfg, out_activation)                                               \
    if ((cfg)->loss == BP_SSE && !(cfg)->weighted && (out_activation) == BP_LOGISTIC) {          \
        const bp_train_config paper = {.loss = BP_SSE, .weighted = 0, .mean = (cfg)->mean};      \
        OUTPUT_DELTAS(&paper, BP_LOGISTIC)                                                       \
    } else {                                                                                     \
        OUTPUT_DELTAS(cfg, out_activation)                                                       \
    }

/* Softmax over the n units of a layer whose rows (ld apart) hold total inputs, case by case
 * (lane by lane): y_u = exp(x_u - max x) / sum_v exp(x_v - max x), over `lanes` lanes. */
static void FN(softmax_omp)(REAL *y, int64_t ld, int64_t n, int64_t lanes)
{
    OMP_FOR
    for (int64_t lane = 0; lane < lanes; lane += VW) {
        VREAL top = FN(vload)(y + lane);
        for (int64_t u = 1; u < n; u++) {
            const VREAL x = FN(vload)(y + u * ld + lane);
            top = FN(vselect)(x > top, x, top);
        }
        VREAL sum = FN(vsplat)(0);
        for (int64_t u = 0; u < n; u++) {
            const VREAL e = FN(vexp)(FN(vload)(y + u * ld + lane) - top);
            FN(vstore)(y + u * ld + lane, e);
            sum += e;
        }
        for (int64_t u = 0; u < n; u++)
            FN(vstore)(y + u * ld + lane, FN(vload)(y + u * ld + lane) / sum);
    }
}

/* What multiplies dE/dx at the outputs (1, or 1 / the batch's cases or weights for a mean). The
   same value on every thread: each sums the batch's weights in one fixed order. */
static inline REAL FN(gradient_scale)(const REAL *weights, int64_t n_rows,
                                      const bp_train_config *cfg)
{
    if (!cfg->mean)
        return 1;
    double total = (double)n_rows;
    if (weights) {
        total = 0;
        for (int64_t r = 0; r < n_rows; r++)
            total += weights[r];
    }
    return total > 0 ? (REAL)(1.0 / total) : (REAL)0;
}

/* E = LOSS_FACTOR(loss) * the sum of output_delta's lane-wise terms. */
#define LOSS_FACTOR(loss) ((loss) == BP_CROSS_ENTROPY ? 1.0 : 0.5)

/* One output unit over one vector of cases: adds the lanes' loss terms to *loss, marks in
 * *outside the real lanes whose output is not within `tol` of its target, and returns dE/dx
 * (times `scale` if cfg->mean). Lanes past the first n_cases (padding), lanes of weight 0, and for
 * the dead-zone loss the lanes inside the zone count nothing. w: the lanes' case weights (ignored
 * unless cfg->weighted). The small-nets loop, the layer kernels and the population lanes all call
 * this, so they agree bit for bit. scale and tol are vectors for the lanes, whose members each
 * have their own. */
static inline VREAL FN(output_delta)(VREAL yv, VREAL dv, VREAL w, int64_t n_cases,
                                     const bp_train_config *cfg, int activation, VREAL scale,
                                     VREAL tol, VREAL *loss, VINT *outside)
{
    VINT lane_index;
    for (int i = 0; i < VW; i++)
        lane_index[i] = i;
    /* lanes of real cases (counted in 64 bits: ITYPE is 32-bit for float) */
    VINT valid = lane_index < (ITYPE)MIN(n_cases, (int64_t)VW);
    if (cfg->weighted)
        valid &= w != 0;
    valid &= dv == dv; /* a NaN target is none: no error, no stop test (a recurrent net's mask) */
    const VREAL e = yv - dv;
    const VREAL abs_e = FN(vselect)(e < 0, -e, e);
    *outside |= valid & ~(abs_e < tol);
    VINT keep = valid;
    if (cfg->loss == BP_DEAD_ZONE) {
        const REAL off = (REAL)cfg->dead_zone_off, on = (REAL)cfg->dead_zone_on;
        keep &= ~(((dv >= (REAL)0.5) & (yv > on)) | ((dv < (REAL)0.5) & (yv < off)));
    }
    const VREAL zero = FN(vsplat)(0);
    const VREAL err = FN(vselect)(keep, e, zero);
    VREAL term, delta;
    if (cfg->loss == BP_CROSS_ENTROPY) {
        /* dE/dx = y - d for softmax and for logistic outputs alike */
#if BP_DOUBLE
        const REAL eps = 2.220446049250313e-16;
#else
        const REAL eps = 1.1920929e-07f;
#endif
        VREAL y = FN(vselect)(yv < eps, FN(vsplat)(eps), yv);
        y = FN(vselect)(y > (REAL)1 - eps, FN(vsplat)((REAL)1 - eps), y);
        term = dv * FN(vlog)(y);
        if (activation != BP_SOFTMAX)
            term += ((REAL)1 - dv) * FN(vlog)((REAL)1 - y);
        term = FN(vselect)(keep, (yv - yv) - term, zero); /* y - y: a NaN output stays NaN */
        delta = err;
    } else {
        term = err * err;
        delta = err * FN(vderivative)(yv, activation);
    }
    if (cfg->weighted) {
        term *= w;
        delta *= w;
    }
    *loss += term;
    return cfg->mean ? delta * scale : delta;
}
