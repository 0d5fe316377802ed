/* kernels.inc.c: the math of one sweep, for one precision, one instruction set and one threading
 * mode. isa.inc.c includes it once per (REAL, PAR) of a variant; never compiled on its own.
 *
 * Layout: every layer's activations are a (units, ld) matrix, "feature-major": row u holds unit
 * u's output for every case of the batch, so the batch runs along SIMD lanes. ld is the batch
 * rounded up to a 64-byte line; a kernel works on `lanes`, the batch rounded up to its own vector
 * width VW (<= ld). Padding lanes hold zero inputs and get zero errors, so they never reach a
 * gradient. With this layout the three products of a dense layer are
 *   forward        Y (O,B)  = W (O,C)  X (C,B)    broadcast W[o,c], FMA into rows of Y
 *   input grad     dX (C,B) = W^T      D (O,B)    broadcast W[o,c], FMA into rows of dX
 *   weight grad    dW (O,C) = D (O,B)  X^T        broadcast D[o,b] over a batch-major copy of X
 *                                                 (wide sources), or lane dot products (narrow)
 * computed in register tiles sized for the variant (TILE_ROWS x TILE_VECTORS, DOT_ROWS x DOT_COLS:
 * see kernels_<isa>.c), in blocks of BLOCK_K terms and BLOCK_LANES lanes that stay in cache.
 *
 * Determinism: every output element is computed by one thread with the same sequence of
 * operations whatever the blocking or the thread count (initial value, then terms in a fixed
 * order, a partial sum stored and reloaded exactly between K blocks; lane sums reduced in a fixed
 * tree), so results are bitwise identical for any n_threads.
 *
 * With PAR = 1 the *_omp functions split work with orphaned `omp for` inside an enclosing parallel
 * region (product_omp: runs of tiles of equal work, by THREAD_INDEX of THREAD_COUNT); with PAR = 0
 * the same code is compiled without OpenMP, so one thread pays nothing for it. A training batch
 * instead gives each thread its own lanes (lane_view) for everything but the sums over cases.
 *
 * Not here: validation (Python), allocation (workspace.inc.c), the sweep loop (train.inc.c).
 */

/* ---- vectors ------------------------------------------------------------------------------ */

static inline VREAL FN(vload)(const REAL *p) { return *(const UVREAL *)p; }
static inline void FN(vstore)(REAL *p, VREAL v) { *(UVREAL *)p = v; }
/* The first n lanes at p (all of them if n >= VW), the rest zero: a row that ends mid-vector. */
static inline VREAL FN(vload_first)(const REAL *p, int64_t n)
{
    if (n >= VW)
        return FN(vload)(p);
    VREAL v = {0};
    if (n > 0)
        memcpy(&v, p, (size_t)n * sizeof(REAL));
    return v;
}
/* The first n lanes of v to p (all of them if n >= VW, none if n <= 0). */
static inline void FN(vstore_first)(REAL *p, VREAL v, int64_t n)
{
    if (n >= VW)
        FN(vstore)(p, v);
    else if (n > 0)
        memcpy(p, &v, (size_t)n * sizeof(REAL));
}
/* Every lane = s. Written as s - 0, which is exactly s for every s, so the compiler folds it to a
   plain broadcast (`0 + s` is not: 0 + -0.0 is +0.0, so that add would have to stay). */
static inline VREAL FN(vsplat)(REAL s) { return s - (VREAL){0}; }

/* mask ? a : b, lane by lane (C has no vector ?:). */
static inline VREAL FN(vselect)(VINT mask, VREAL a, VREAL b)
{
    VINT ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    ia = (ia & mask) | (ib & ~mask);
    memcpy(&a, &ia, sizeof a);
    return a;
}

/* f(i, a) for each lane i of a vector, comma-separated: a vector literal's elements, or a
   shuffle's indices. */
#define LANES_2(f, a) f(0, a), f(1, a)
#define LANES_4(f, a) LANES_2(f, a), f(2, a), f(3, a)
#define LANES_8(f, a) LANES_4(f, a), f(4, a), f(5, a), f(6, a), f(7, a)
#define LANES_16(f, a) \
    LANES_8(f, a), f(8, a), f(9, a), f(10, a), f(11, a), f(12, a), f(13, a), f(14, a), f(15, a)
#undef LANES
#if VW == 16
#define LANES LANES_16
#elif VW == 8
#define LANES LANES_8
#elif VW == 4
#define LANES LANES_4
#else
#define LANES LANES_2
#endif
/* Lane i of the result is lane f(i, arg) of a followed by b, for constant indices f(i, arg).
   Clang takes the indices as arguments (__builtin_shufflevector); GCC as a mask vector
   (__builtin_shuffle, which clang lacks: GCC has the other only from version 12 on, and
   manylinux2014's is 10). */
#undef SHUFFLE2
#if defined(__clang__)
#define SHUFFLE2(a, b, f, arg) __builtin_shufflevector((a), (b), LANES(f, arg))
#else
#define SHUFFLE2(a, b, f, arg) __builtin_shuffle((a), (b), (VINT){LANES(f, arg)})
#endif

/* Lanes half*VW/2 .. of a and b interleaved: a[h], b[h], a[h + 1], b[h + 1], ... */
#define INTERLEAVE(i, half) ((half) * (VW / 2) + (i) / 2 + ((i) % 2) * VW)

/* v[0..VW) as rows of a VW x VW block -> its columns, in log2(VW) rounds of interleaving rows i
 * and i + VW/2 (after round k, each vector holds 2^k runs of VW/2^k ... the last round leaves
 * column j in v[j]). */
static inline void FN(transpose_block)(VREAL v[VW])
{
    for (int round = 1; round < VW; round *= 2) {
        VREAL out[VW];
        for (int i = 0; i < VW / 2; i++) {
            out[2 * i] = SHUFFLE2(v[i], v[i + VW / 2], INTERLEAVE, 0);
            out[2 * i + 1] = SHUFFLE2(v[i], v[i + VW / 2], INTERLEAVE, 1);
        }
        memcpy(v, out, sizeof out);
    }
}

/* lane i <- lane i + width (lanes past the end wrap round and are never read) */
#define DOWN_BY(i, width) (((i) + (width)) % VW)
#define ADD_DOWN(v, width) ((v) + SHUFFLE2((v), (v), DOWN_BY, width))

/* Sum of the lanes in a fixed pairwise order: lane i + width added to lane i, for width = VW/2
   down to 1. Each step adds v and v with its lanes moved down by width, a constant shuffle
   (lanes >= width then hold sums never read). Written lane by lane, the compiler went through
   the stack, each step waiting on a store: a fifth of W1's sweep with AVX-512. */
static inline REAL FN(hsum)(VREAL v)
{
#if VW >= 16
    v = ADD_DOWN(v, 8);
#endif
#if VW >= 8
    v = ADD_DOWN(v, 4);
#endif
#if VW >= 4
    v = ADD_DOWN(v, 2);
#endif
    v = ADD_DOWN(v, 1);
    return v[0];
}

/* The unit functions, their derivatives and the output losses. */
#include "units.inc.c"

/* ---- register tiles ----------------------------------------------------------------------- */

/* Tiles stay functions of their own: each is one tight loop the compiler allocates registers for
   alone (and bench/spills.py can check), and a call costs nothing beside K x MR x NV FMAs. */
#define NOINLINE __attribute__((noinline))

/* C[i, lanes] = start + sum_k A(i,k) B[k, lanes], for MR rows and NV vectors of lanes.
 * A(i,k) = A[i*rsa + k*csa] (W for the forward pass, W^T for the input gradient, D for the weight
 * gradient). start: C itself if `accumulate`, else init[i] (a bias), else 0. If activation >= 0
 * the result goes through the unit function. Only the first `width` lanes of each row are read
 * and stored (a weight-gradient row ends where the weights do). */
#define DEFINE_BROADCAST_TILE(NAME, MR, NV)                                                      \
    static NOINLINE void FN(NAME)(REAL *BP_RESTRICT C, int64_t ldc, const REAL *BP_RESTRICT A,   \
                                int64_t rsa, int64_t csa, const REAL *BP_RESTRICT B,             \
                                int64_t ldb, int64_t K, const REAL *init, int accumulate,        \
                                int activation, int64_t width)                                   \
    {                                                                                            \
        VREAL acc[MR][NV];                                                                       \
        for (int i = 0; i < MR; i++)                                                             \
            for (int v = 0; v < NV; v++)                                                         \
                acc[i][v] = accumulate ? FN(vload_first)(C + i * ldc + v * VW, width - v * VW)  \
                                       : FN(vsplat)(init ? init[i] : (REAL)0);                   \
        for (int64_t k = 0; k < K; k++) {                                                        \
            VREAL b[NV];                                                                         \
            for (int v = 0; v < NV; v++)                                                         \
                b[v] = FN(vload)(B + k * ldb + v * VW);                                          \
            for (int i = 0; i < MR; i++) {                                                       \
                const VREAL a = FN(vsplat)(A[i * rsa + k * csa]);                                \
                for (int v = 0; v < NV; v++)                                                     \
                    acc[i][v] = VFMA(a, b[v], acc[i][v]);                                        \
            }                                                                                    \
        }                                                                                        \
        if (activation >= 0) /* the tile's vectors in blocks: their chains side by side */    \
            FN(vactivate_span)(&acc[0][0], MR * NV, activation);                                 \
        for (int i = 0; i < MR; i++)                                                             \
            for (int v = 0; v < NV; v++)                                                         \
                FN(vstore_first)(C + i * ldc + v * VW, acc[i][v], width - v * VW);               \
    }
/* Full-height tiles, and a tile of each height below for the rows left over (one 4-row tile
   does the work of two 2-row ones with half the loads of B: those were 16% of the tile time of a
   100-unit layer), of every width up to TILE_VECTORS. */
#if TILE_ROWS > 4
#define DEFINE_REMAINDER_TILES_5(NV) DEFINE_BROADCAST_TILE(tile_rows5_##NV, 5, NV)              \
                                     DEFINE_BROADCAST_TILE(tile_rows4_##NV, 4, NV)
#elif TILE_ROWS > 3
#define DEFINE_REMAINDER_TILES_5(NV)
#else
#error "TILE_ROWS of 3 or fewer: add its remainder tiles"
#endif
#if TILE_ROWS > 6
#error "TILE_ROWS above 6: add its remainder tiles"
#endif
#define DEFINE_BROADCAST_TILES(NV)                                                               \
    DEFINE_BROADCAST_TILE(tile_full_##NV, TILE_ROWS, NV)                                         \
    DEFINE_REMAINDER_TILES_5(NV)                                                                 \
    DEFINE_BROADCAST_TILE(tile_rows3_##NV, 3, NV)                                                \
    DEFINE_BROADCAST_TILE(tile_rows2_##NV, 2, NV)                                                \
    DEFINE_BROADCAST_TILE(tile_rows1_##NV, 1, NV)
DEFINE_BROADCAST_TILES(1)
DEFINE_BROADCAST_TILES(2)
#if TILE_VECTORS >= 3
DEFINE_BROADCAST_TILES(3)
#endif
#if TILE_VECTORS >= 4
DEFINE_BROADCAST_TILES(4)
#endif
#if TILE_VECTORS > 4
#error "add the tiles of more than 4 vectors"
#endif

#define TILE_LANES (TILE_VECTORS * VW)

/* One (rows x vectors) block of a broadcast product (rows <= TILE_ROWS, vectors <=
   TILE_VECTORS): one tile of that height. */
static void FN(broadcast_block)(REAL *C, int64_t ldc, const REAL *A, int64_t rsa, int64_t csa,
                                const REAL *B, int64_t ldb, int64_t K, const REAL *init,
                                int accumulate, int activation, int64_t rows, int64_t vectors,
                                int64_t width)
{
#define TILE_ARGS(i) C + (i) * ldc, ldc, A + (i) * rsa, rsa, csa, B, ldb, K, \
                     init ? init + (i) : NULL, accumulate, activation, width
#define TILE_WIDTH_CASE(KIND, NV) case NV: FN(tile_##KIND##_##NV)(TILE_ARGS(i)); break;
#if TILE_VECTORS >= 4
#define TILE_WIDTH_CASE4(KIND) TILE_WIDTH_CASE(KIND, 4)
#else
#define TILE_WIDTH_CASE4(KIND)
#endif
#if TILE_VECTORS >= 3
#define TILE_WIDTH_CASE3(KIND) TILE_WIDTH_CASE(KIND, 3)
#else
#define TILE_WIDTH_CASE3(KIND)
#endif
#define TILE_CASES(KIND)                                                                         \
    switch (vectors) {                                                                           \
    TILE_WIDTH_CASE4(KIND)                                                                       \
    TILE_WIDTH_CASE3(KIND)                                                                       \
    TILE_WIDTH_CASE(KIND, 2)                                                                     \
    default: FN(tile_##KIND##_1)(TILE_ARGS(i)); break;                                           \
    }
    const int64_t i = 0;
    switch (rows) {
    case TILE_ROWS: TILE_CASES(full) break;
#if TILE_ROWS > 4
    case 5: TILE_CASES(rows5) break;
    case 4: TILE_CASES(rows4) break;
#endif
    case 3: TILE_CASES(rows3) break;
    case 2: TILE_CASES(rows2) break;
    default: TILE_CASES(rows1) break;
    }
#undef TILE_CASES
#undef TILE_WIDTH_CASE3
#undef TILE_WIDTH_CASE4
#undef TILE_WIDTH_CASE
#undef TILE_ARGS
}

/* G[i*ldg + j] = sum over lanes of D[i, lane] X[j, lane], for MR x NR outputs. */
#define DEFINE_DOT_TILE(MR, NR)                                                                  \
    static NOINLINE void FN(dots_##MR##x##NR)(REAL *BP_RESTRICT G, int64_t ldg,                  \
                                            const REAL *BP_RESTRICT D, int64_t ldd,              \
                                            const REAL *BP_RESTRICT X, int64_t ldx,              \
                                            int64_t lanes)                                       \
    {                                                                                            \
        VREAL acc[MR][NR];                                                                       \
        for (int i = 0; i < MR; i++)                                                             \
            for (int j = 0; j < NR; j++)                                                         \
                acc[i][j] = FN(vsplat)(0);                                                       \
        for (int64_t lane = 0; lane < lanes; lane += VW) {                                       \
            VREAL d[MR], x[NR];                                                                  \
            for (int i = 0; i < MR; i++)                                                         \
                d[i] = FN(vload)(D + i * ldd + lane);                                            \
            for (int j = 0; j < NR; j++)                                                         \
                x[j] = FN(vload)(X + j * ldx + lane);                                            \
            for (int i = 0; i < MR; i++)                                                         \
                for (int j = 0; j < NR; j++)                                                     \
                    acc[i][j] = VFMA(d[i], x[j], acc[i][j]);                                     \
        }                                                                                        \
        for (int i = 0; i < MR; i++)                                                             \
            for (int j = 0; j < NR; j++)                                                         \
                G[i * ldg + j] = FN(hsum)(acc[i][j]);                                            \
    }
#define DEFINE_DOT_TILE_(MR, NR) DEFINE_DOT_TILE(MR, NR)
#define DOT_TILE_(MR, NR) FN(dots_##MR##x##NR)
#define DOT_TILE(MR, NR) DOT_TILE_(MR, NR)
DEFINE_DOT_TILE_(DOT_ROWS, DOT_COLS)
DEFINE_DOT_TILE_(DOT_ROWS, 1)
DEFINE_DOT_TILE_(1, DOT_COLS)
DEFINE_DOT_TILE(1, 1)

static void FN(dot_block)(REAL *G, int64_t ldg, const REAL *D, int64_t ldd, const REAL *X,
                          int64_t ldx, int64_t lanes, int64_t rows, int64_t cols)
{
#define DOT_ARGS(i, j) G + (i) * ldg + (j), ldg, D + (i) * ldd, ldd, X + (j) * ldx, ldx, lanes
    if (rows == DOT_ROWS && cols == DOT_COLS) {
        DOT_TILE(DOT_ROWS, DOT_COLS)(DOT_ARGS(0, 0));
    } else if (rows == DOT_ROWS) {
        for (int64_t j = 0; j < cols; j++)
            DOT_TILE(DOT_ROWS, 1)(DOT_ARGS(0, j));
    } else if (cols == DOT_COLS) {
        for (int64_t i = 0; i < rows; i++)
            DOT_TILE(1, DOT_COLS)(DOT_ARGS(i, 0));
    } else {
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++)
                FN(dots_1x1)(DOT_ARGS(i, j));
    }
#undef DOT_ARGS
}

static inline int64_t FN(ceil_div)(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* Whether to skip tile (or row) `index` of a loop because a stop was requested (ws->stop): polled
 * every 16 indexes (small loops, as in the paper's nets, cost nothing: the decisions between
 * batches poll too), remembered in the calling thread's *skip. Never used where skipped work would
 * outlive the call (binding the batch: bind_all_omp trusts what it bound before). Threads may
 * notice at different tiles; the results of a cut-short call are never used, and the decision to
 * stop is taken once, by one thread, after the loop (train.inc.c; the request never goes away
 * once made). */
static inline int FN(skip_tile)(const WS *ws, int64_t index, int *skip)
{
    if (!*skip && (index & 15) == 15 && ws->stop) /* loops of under 16 are never polled */
        *skip = bp_stop_requested(ws->stop);
    return *skip;
}

/* Blocks for the caches: a tile's B panel (BLOCK_K rows of TILE_LANES) is 16 KiB, for L1, but
   at least 128 terms; a block of B (BLOCK_K rows of BLOCK_LANES), packed into ws->pack, at most
   BP_PACK_BYTES, and a block of A (BLOCK_ROWS rows of BLOCK_K) at most 128 KiB, for L2. A B panel
   stays in cache while the tiles of a block of A's rows use it in turn. Each K block costs a tile
   a round trip of its accumulators through C, and a threaded product a barrier: with AVX-512's
   panels of 4 vectors, 16 KiB held only 64 terms, and 128 (a 32 KiB panel, its 4 loads a term
   served from L2 as fast) trained a 100-100-10 net on batches of 200 8% faster on one thread and
   12% on two, and W4 7-8% (Zen 5, paired runs of bench/ab.py, session 20). */
#define BLOCK_A_BYTES 131072
#define BLOCK_K MAX((int64_t)(16384 / (TILE_VECTORS * VBYTES)), 128)
#define BLOCK_LANES \
    ((int64_t)(BP_PACK_BYTES / (BLOCK_K * sizeof(REAL))) / TILE_LANES * TILE_LANES)
#define BLOCK_ROW_TILES ((int64_t)(BLOCK_A_BYTES / (BLOCK_K * sizeof(REAL))) / TILE_ROWS)
/* Products with at least this many row blocks pack B: each panel is then read that many times,
   and from contiguous memory instead of k_count rows far apart. */
#define PACK_MIN_ROW_BLOCKS 4
/* ... and whose B rows are at least a page apart. Nearer, a panel read in place is as fast
   (bp_row_stride's odd strides spread its rows over every set of L1), and packing cost only its
   copy: without it issue 12's 100-100-10 net (rows 832 bytes apart) trained 4% faster on one
   thread, bench/ab.py's S and digits 1.5-3% on every variant, W3 and W4 the same. With rows 32
   KiB apart (full batches of 8,192 cases) avx2 trained 1.11x slower unpacked, at 16 KiB 1.01-
   1.03x, at 4 and 8 KiB the same (Zen 5, session 28). */
#define PACK_MIN_ROW_BYTES 4096
/* Row blocks of a transposed A (the input gradient's W^T) packed at a time into ws->pack_a. */
#define PACK_A_ROW_BLOCKS ((int64_t)(BP_PACK_A_BYTES / BLOCK_A_BYTES))

/* Copy the block (k_count rows x lanes) of B starting at row 0, lane n0 into `pack` as panels of
   TILE_LANES: panel p holds lanes [p TILE_LANES, (p + 1) TILE_LANES), row k at k TILE_LANES. */
static void FN(pack_block_omp)(REAL *pack, const REAL *B, int64_t ldb, int64_t k_count,
                               int64_t n0, int64_t lanes)
{
    const int64_t panels = FN(ceil_div)(lanes, TILE_LANES);
    OMP_FOR
    for (int64_t k = 0; k < k_count; k++)
        for (int64_t p = 0; p < panels; p++) {
            /* whole vectors (lanes is), moved as vectors: a memcpy call per panel row cost 3%
               of a 100-100-10 net's batch */
            REAL *to = pack + (p * k_count + k) * TILE_LANES;
            const REAL *from = B + k * ldb + n0 + p * TILE_LANES;
            const int64_t vectors = MIN(TILE_LANES, lanes - p * TILE_LANES) / VW;
            for (int64_t v = 0; v < vectors; v++)
                FN(vstore)(to + v * VW, FN(vload)(from + v * VW));
        }
}

/* Copy rows [m0, m0 + rows) x terms [0, k_count) of A (A(i,k) = A[i*rsa + k*csa]) into `pack` as
   row-tile panels: panel r holds A(m0 + r TILE_ROWS + i, k) at (r k_count + k) TILE_ROWS + i, so
   a tile reads its terms front to back. Read term by term: for the transposed A (W^T, rsa 1)
   each term is a contiguous run of a row of W. */
static void FN(pack_rows_omp)(REAL *pack, const REAL *A, int64_t rsa, int64_t csa, int64_t m0,
                              int64_t rows, int64_t k_count)
{
    const int64_t panels = FN(ceil_div)(rows, TILE_ROWS);
    OMP_FOR
    for (int64_t k = 0; k < k_count; k++)
        for (int64_t r = 0; r < panels; r++) {
            REAL *to = pack + (r * k_count + k) * TILE_ROWS;
            const REAL *from = A + (m0 + r * TILE_ROWS) * rsa + k * csa;
            const int64_t n = MIN(TILE_ROWS, rows - r * TILE_ROWS);
            if (rsa == 1 && n == TILE_ROWS)
                memcpy(to, from, TILE_ROWS * sizeof(REAL)); /* a fixed size: a few moves */
            else
                for (int64_t i = 0; i < n; i++)
                    to[i] = from[i * rsa];
        }
}

/* Where a thread's run of product_omp's tiles starts: the first tile whose work before it (a tile's
 * work: its rows x vectors) reaches `target`, in product_omp's order over `rows` rows of C and
 * `lanes` lanes of its current block (n_left: its lanes from the block's first to C's last).
 * Threads used to take equal counts of tiles, but the last row tile and the last lane panel are
 * narrow: a 100-unit layer over batches of 200 has lane panels of 4, 4, 4 and 1 vectors
 * (AVX-512), and by count one of two threads took 136 of its forward product's 221 tile-vectors
 * while the other, with 85, waited for it at the barrier. */
static int64_t FN(tile_at_work)(int64_t target, int64_t rows, int64_t n_left, int64_t lanes)
{
    const int64_t tiles = FN(ceil_div)(rows, TILE_ROWS);
    const int64_t lane_blocks = FN(ceil_div)(lanes, TILE_LANES);
    int64_t t = 0, done = 0;
    for (int64_t rb0 = 0; rb0 < tiles; rb0 += BLOCK_ROW_TILES) {
        const int64_t row_tiles = MIN(BLOCK_ROW_TILES, tiles - rb0);
        const int64_t block_rows = MIN(row_tiles * TILE_ROWS, rows - rb0 * TILE_ROWS);
        if (done >= target)
            return t;
        if (done + block_rows * (lanes / VW) <= target) { /* the whole block comes before */
            done += block_rows * (lanes / VW);
            t += row_tiles * lane_blocks;
            continue;
        }
        for (int64_t lb = 0; lb < lane_blocks; lb++) {
            const int64_t vectors = MIN(TILE_VECTORS, (n_left - lb * TILE_LANES) / VW);
            if (done >= target)
                return t;
            if (done + block_rows * vectors <= target) { /* the whole panel comes before */
                done += block_rows * vectors;
                t += row_tiles;
                continue;
            }
            for (int64_t rb = rb0; rb < rb0 + row_tiles; rb++, t++) {
                if (done >= target)
                    return t;
                done += MIN(TILE_ROWS, rows - rb * TILE_ROWS) * vectors;
            }
        }
    }
    return t;
}

/* C (M x N lanes) = start + A (M x K) B (K x N), in register tiles, BLOCK_LANES lanes by BLOCK_K
 * terms at a time. A(i,k) = A[i*rsa + k*csa]; row k of B starts at B + k*ldb; N is whole vectors.
 * start: C if `accumulate`, else init[i] if init, else 0; the unit function `activation` (if >=
 * 0) is applied with the last terms. Only the first `width` lanes of each row of C are stored,
 * and only their vectors computed: a weight gradient's N is the padded stride of a batch-major
 * copy (80 lanes for 64 inputs), and a fifth of the digits net's input-weight gradient was
 * computed and never stored (bench/ab.py, digits, 1 thread: 0.92-0.94 on every variant).
 * A partial sum goes through C between K blocks, exactly, so blocking never changes a result.
 * A transposed A (csa != 1: W^T, whose terms for one tile lie a row of W apart) is packed into
 * row-tile panels PACK_A_ROW_BLOCKS row blocks at a time when its panels are read at least twice
 * (two or more lane panels): read in place, each of its terms costs a cache line and often a
 * page of its own (measured on Zen 3: the input-gradient product at 70 GFLOP/s against 88 for
 * the forward one). */
static void FN(product_omp)(WS *ws, REAL *C, int64_t ldc, const REAL *A, int64_t rsa,
                            int64_t csa, const REAL *B, int64_t ldb, int64_t M, int64_t N,
                            int64_t K, const REAL *init, int accumulate, int activation,
                            int64_t width)
{
    N = MIN(N, FN(ceil_div)(width, VW) * VW);
    const int64_t row_blocks = FN(ceil_div)(M, TILE_ROWS);
    /* (a thread's lane view has no buffers to pack into: see lane_view) */
    const int packed = ws->pack && row_blocks >= PACK_MIN_ROW_BLOCKS &&
                       ldb * (int64_t)sizeof(REAL) >= PACK_MIN_ROW_BYTES;
    const int packed_a = ws->pack_a && csa != 1 && N > TILE_LANES;
    /* rows per group: the row blocks that fit ws->pack_a, or all of them */
    const int64_t group = packed_a ? PACK_A_ROW_BLOCKS * BLOCK_ROW_TILES * TILE_ROWS : M;
    int skip = 0;
    /* Blocks (each of a group's tiles, ending at a barrier) so far. A thread that skipped tiles
       for a stop says so in ws->stop_seen[block % 2] before the block's barrier, and every thread
       leaves at the next block's start if the last block's slot says so: all at the same block,
       as they must with barriers ahead, since the slot they read can next be written two blocks
       on, past a barrier the slowest reader has not reached (the other slot's writes are the
       current block's). Skipping only the tiles, a product of a 512-2048-2048-512 net's batch of
       3,000 cases still waited at its 200 blocks' barriers, and with two threads on a machine
       whose cores were busy each barrier cost a time slice: Ctrl-C took 1.3-6.6 s (session 26).
       A slot set in an earlier product of the call is seen by all at once too. */
    int64_t block = 0;
    for (int64_t n0 = 0; n0 < N; n0 += BLOCK_LANES) {
        const int64_t lanes = MIN(BLOCK_LANES, N - n0);
        const int64_t lane_blocks = FN(ceil_div)(lanes, TILE_LANES);
        /* K in equal blocks of at most BLOCK_K: no short last block paying a tile's set-up */
        const int64_t k_block = FN(ceil_div)(K, MAX(FN(ceil_div)(K, BLOCK_K), 1));
        int64_t k0 = 0;
        do {
            const int64_t k_count = MIN(k_block, K - k0);
            const int first = k0 == 0, last = k0 + k_count >= K;
            if (packed)
                FN(pack_block_omp)(ws->pack, B + k0 * ldb, ldb, k_count, n0, lanes);
            for (int64_t m0 = 0; m0 < M; m0 += group, block++) {
                if (block > 0 && ws->stop &&
                    __atomic_load_n(&ws->stop_seen[(block - 1) % 2], __ATOMIC_RELAXED))
                    return;
                const int64_t rows = MIN(group, M - m0);
                const int64_t tiles = FN(ceil_div)(rows, TILE_ROWS);
                if (packed_a)
                    FN(pack_rows_omp)(ws->pack_a, A + k0 * csa, rsa, csa, m0, rows, k_count);
                /* tile t: a block of BLOCK_ROW_TILES row tiles, then a lane panel, then a row
                   tile in it: one loop for the threads to share (one barrier), in cache order,
                   each thread a run of tiles of about equal work (tile_at_work).
                   Its row tile rb and lane panel lb follow from the last tile's, decoded from t
                   only where a thread's run of tiles starts: two divisions a tile were about a
                   tenth of the time W7 (baseline, 30-unit layers, 20 lanes) spent in its products
                   outside the tiles. */
                int64_t next = -1, rb0 = 0, row_tiles = 0, lb = 0, rb = 0;
                const int64_t work = rows * (lanes / VW), share = THREAD_COUNT;
                const int64_t t_end = FN(tile_at_work)(work * (THREAD_INDEX + 1) / share, rows,
                                                       N - n0, lanes);
                for (int64_t t = FN(tile_at_work)(work * THREAD_INDEX / share, rows, N - n0,
                                                  lanes);
                     t < t_end; t++) {
                    if (FN(skip_tile)(ws, t, &skip))
                        continue;
                    if (t != next) {
                        rb0 = t / (BLOCK_ROW_TILES * lane_blocks) * BLOCK_ROW_TILES;
                        row_tiles = MIN(BLOCK_ROW_TILES, tiles - rb0);
                        const int64_t in_block = t - rb0 * lane_blocks;
                        lb = in_block / row_tiles;
                        rb = rb0 + in_block % row_tiles;
                    }
                    const int64_t i = m0 + rb * TILE_ROWS, j = n0 + lb * TILE_LANES;
                    FN(broadcast_block)(
                        C + i * ldc + j, ldc,
                        packed_a ? ws->pack_a + rb * k_count * TILE_ROWS : A + i * rsa + k0 * csa,
                        packed_a ? 1 : rsa, packed_a ? TILE_ROWS : csa,
                        packed ? ws->pack + lb * k_count * TILE_LANES : B + k0 * ldb + j,
                        packed ? TILE_LANES : ldb, k_count, first && init ? init + i : NULL,
                        !first || accumulate, last ? activation : -1, MIN(TILE_ROWS, M - i),
                        MIN(TILE_VECTORS, (N - j) / VW), width - j);
                    /* tile t + 1: the next row tile, else the next panel's first, else the
                       next block's first */
                    next = t + 1;
                    if (++rb == rb0 + row_tiles) {
                        rb = rb0;
                        if (++lb == lane_blocks) {
                            lb = 0;
                            rb0 += BLOCK_ROW_TILES;
                            rb = rb0;
                            row_tiles = MIN(BLOCK_ROW_TILES, tiles - rb0);
                        }
                    }
                }
                if (skip)
                    __atomic_store_n(&ws->stop_seen[block % 2], 1, __ATOMIC_RELAXED);
                OMP_BARRIER
            }
            k0 += k_count;
        } while (k0 < K);
    }
}

/* Whether some edge of layer l has rows of absent connections only (a shared net, bp_net's
   row_start / row_end): its products then skip those rows. */
static inline int FN(partial_layer)(const bp_net *net, int l)
{
    if (!net->row_start)
        return 0;
    for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++)
        if (net->row_start[e] != 0 || net->row_end[e] != net->size[l])
            return 1;
    return 0;
}

/* layer_forward_omp for a partial layer: every row starts at its bias, each edge adds its rows
   (the recurrent net's outputs: step t's block fills step t's rows only), then the unit
   function over the whole layer. */
static void FN(partial_layer_forward_omp)(const bp_net *net, WS *ws, const REAL *params, int l,
                                          int64_t lanes, const REAL *bias)
{
    const int64_t n = net->size[l], ld = ws->ld;
    REAL *y = ws->y[l];
    OMP_FOR
    for (int64_t o = 0; o < n; o++)
        for (int64_t lane = 0; lane < lanes; lane += VW)
            FN(vstore)(y + o * ld + lane, FN(vsplat)(bias ? bias[o] : 0));
    for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
        const int src = net->src_layer[e];
        const int64_t n_in = net->size[src], r0 = net->row_start[e], rows = net->row_end[e] - r0;
        if (rows > 0)
            FN(product_omp)(ws, y + r0 * ld, ld, params + net->w_offset[e] + r0 * n_in, n_in, 1,
                            ws->y[src], ld, rows, lanes, n_in, NULL, 1, -1, lanes);
    }
    if (net->activation[l] == BP_SOFTMAX) {
        FN(softmax_omp)(y, ld, n, lanes);
    } else if (net->activation[l] != BP_IDENTITY) {
        OMP_FOR
        for (int64_t o = 0; o < n; o++)
            FN(vactivate_span)((VREAL *)(y + o * ld), lanes / VW, net->activation[l]);
    }
}

/* Layer l over `lanes` lanes (the batch rounded up to whole vectors):
 *   y[o, b] = f(bias[o] + sum_e sum_c W_e[o, c] x_e[c, b])      W_e (O, C_e), x_e (C_e, ld)
 * (softmax: the sums, then softmax_omp over the layer once the products' barriers are passed) */
static void FN(layer_forward_omp)(const bp_net *net, WS *ws, const REAL *params, int l,
                                  int64_t lanes)
{
    const REAL *bias = net->bias_offset[l] >= 0 ? params + net->bias_offset[l] : NULL;
    const int first = net->src_start[l], last = net->src_start[l + 1] - 1;
    const int softmax = net->activation[l] == BP_SOFTMAX; /* a function of the whole layer */
    if (FN(partial_layer)(net, l)) {
        FN(partial_layer_forward_omp)(net, ws, params, l, lanes, bias);
        return;
    }
    for (int e = first; e <= last; e++) {
        const int src = net->src_layer[e];
        const int64_t n_in = net->size[src];
        FN(product_omp)(ws, ws->y[l], ws->ld, params + net->w_offset[e], n_in, 1, ws->y[src],
                        ws->ld, net->size[l], lanes, n_in, e == first ? bias : NULL, e != first,
                        e == last && !softmax ? net->activation[l] : -1, lanes);
    }
    if (softmax)
        FN(softmax_omp)(ws->y[l], ws->ld, net->size[l], lanes);
}

/* rows[b, u] = y[u, b] for n units and the first n_cases cases (a batch-major copy; columns
 * past n stay as they are): VW cases by VW units at a time, transposed in registers
 * (transpose_block); the units past the last whole block, and the cases of a last partial
 * block, value by value. No barrier at the end. */
static void FN(transpose_rows_of_omp)(const WS *ws, REAL *rows, int64_t ld_rows, const REAL *y,
                                      int64_t ld, int64_t n, int64_t n_cases)
{
    int skip = 0;
    OMP_FOR_NOWAIT
    for (int64_t b0 = 0; b0 < n_cases; b0 += VW) {
        if (FN(skip_tile)(ws, b0 / VW, &skip))
            continue;
        const int64_t cases = MIN(VW, n_cases - b0);
        int64_t u0 = 0;
        if (cases == VW)
            for (; u0 + VW <= n; u0 += VW) {
                VREAL block[VW];
                for (int j = 0; j < VW; j++)
                    block[j] = FN(vload)(y + (u0 + j) * ld + b0);
                FN(transpose_block)(block);
                for (int i = 0; i < VW; i++)
                    FN(vstore)(rows + (b0 + i) * ld_rows + u0, block[i]);
            }
        for (int64_t u = u0; u < n; u++)
            for (int64_t b = 0; b < cases; b++)
                rows[(b0 + b) * ld_rows + u] = y[u * ld + b0 + b];
    }
}

/* y_rows[l] = layer l's batch-major copy for the first n_rows cases (its padding columns stay
   zero). No barrier at the end: it is read by the weight gradients of the layers it feeds, in
   the backward pass, after the next layer's forward product, which ends in one; y[l], which it
   reads, is not written again in the batch (a barrier fewer a hidden layer and batch). */
static void FN(copy_rows_omp)(const bp_net *net, WS *ws, int l, int64_t n_rows)
{
    FN(transpose_rows_of_omp)(ws, ws->y_rows[l], ws->ld_rows[l], ws->y[l], ws->ld,
                              net->size[l], n_rows);
}

/* Which of the lanes [lane0, lane0 + VW) a unit keeps under dropout (-1: kept), from its stream
 * (bp_dropout_stream): murmur3's 32-bit finaliser of stream + lane * golden ratio. */
static inline VINT FN(dropout_keep)(uint32_t stream, int64_t lane0, uint32_t threshold)
{
    VU32 h;
    for (int i = 0; i < VW; i++)
        h[i] = stream + (uint32_t)(lane0 + i) * 0x9E3779B9u;
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return __builtin_convertvector(h >= threshold, VINT);
}

/* Dropout on hidden layer l's outputs: dropped ones 0, kept ones times 1 / (1 - dropout). */
static void FN(dropout_omp)(const bp_net *net, WS *ws, int l, int64_t lanes, double dropout)
{
    const uint32_t threshold = bp_dropout_threshold(dropout);
    const REAL scale = (REAL)(1.0 / (1.0 - dropout));
    OMP_FOR
    for (int64_t u = 0; u < net->size[l]; u++) {
        const uint32_t stream = bp_dropout_stream(ws->dropout_key, l, u);
        REAL *y = ws->y[l] + u * ws->ld;
        for (int64_t lane = 0; lane < lanes; lane += VW)
            FN(vstore)(y + lane,
                       FN(vselect)(FN(dropout_keep)(stream, ws->lane0 + lane, threshold),
                                   FN(vload)(y + lane) * scale, FN(vsplat)(0)));
    }
}

/* Every computed layer for n_rows cases; with `dropout` > 0 (training) the hidden layers'
   outputs go through dropout_omp; `with_rows`: the batch-major copies for weight gradients. */
static void FN(forward_omp)(const bp_net *net, WS *ws, const REAL *params, int64_t n_rows,
                            int with_rows, double dropout)
{
    const int64_t lanes = FN(ceil_div)(n_rows, VW) * VW;
    for (int l = net->n_inputs; l < net->n_layers; l++) {
        FN(layer_forward_omp)(net, ws, params, l, lanes);
        if (dropout > 0 && l < net->n_layers - 1)
            FN(dropout_omp)(net, ws, l, lanes, dropout);
        if (with_rows && l < net->n_layers - 1 && ws->y_rows[l])
            FN(copy_rows_omp)(net, ws, l, n_rows);
    }
}

/* Unit o's share of E from the sum of its loss terms, and whether all its lanes are within
   stop_tol (none `outside`). */
static inline void FN(keep_unit_error)(WS *ws, int64_t o, VREAL sum, VINT outside,
                                       const bp_train_config *cfg)
{
    int within = 1;
    for (int i = 0; i < VW; i++)
        within &= outside[i] == 0;
    ws->row_error[o] = LOSS_FACTOR(cfg->loss) * (double)FN(hsum)(sum);
    ws->row_within[o] = within;
}

/* ws->error and ws->all_within from every unit's, in unit order. */
static void FN(total_output_error)(WS *ws, int64_t n_out)
{
    double error = 0;
    int all_within = 1;
    for (int64_t o = 0; o < n_out; o++) {
        error += ws->row_error[o];
        all_within &= ws->row_within[o];
    }
    ws->error = error;
    ws->all_within = all_within;
}

/* One output unit's dE/dx over the first n_rows of `lanes` lanes (output_delta): y, its targets
 * d and the case weights (or NULL) in, dy out. Its loss terms are added to *sum and its lanes
 * outside stop_tol marked in *outside; or, with `terms` (a lane view: view_output_error), each
 * vector's terms are stored there and its lanes outside stop_tol in `misses` (1, else 0), for
 * error_from_terms. Both callers pass `terms` as a constant, so each inlined copy has one form. */
static ALWAYS_INLINE void FN(output_delta_span)(const REAL *y, const REAL *d,
                                                const REAL *weights, REAL *dy, int64_t n_rows,
                                                int64_t lanes, const bp_train_config *cfg,
                                                int activation, VREAL scale, VREAL tol,
                                                VREAL *sum, VINT *outside, REAL *terms,
                                                REAL *misses)
{
    for (int64_t lane = 0; lane < lanes; lane += VW) {
        const VREAL w = weights ? FN(vload)(weights + lane) : FN(vsplat)(1);
        VREAL term = FN(vsplat)(0);
        VINT out = {0};
        FN(vstore)(dy + lane, FN(output_delta)(FN(vload)(y + lane), FN(vload)(d + lane), w,
                                               n_rows - lane, cfg, activation, scale, tol,
                                               terms ? &term : sum, terms ? &out : outside));
        if (terms) {
            FN(vstore)(terms + lane, term);
            FN(vstore)(misses + lane, FN(vselect)(out, FN(vsplat)(1), FN(vsplat)(0)));
        }
    }
}

/* The output error of n_out units over the first n_rows of `lanes` lanes (output_delta):
 * dy = dE/dx, from the outputs y and the bound targets (unit j's in row j of ws->t_batch); E
 * (summed over the units in order) to ws->error, and ws->all_within. Unit j's lanes start at
 * (j % block) ld_y + (j / block) step in y and dy: a layer's rows (block n_out), or a recurrent
 * net's outputs with every step's lanes side by side (block n_outputs, `step` lanes a step). */
static void FN(output_error_rows_omp)(WS *ws, const REAL *y_rows, REAL *dy_rows, int64_t n_out,
                                      int64_t block, int64_t ld_y, int64_t step, int activation,
                                      int64_t n_rows, int64_t lanes, const bp_train_config *cfg)
{
    const int64_t ld = ws->ld;
    const REAL *weights = cfg->weighted ? ws->t_batch + n_out * ld : NULL;
    const VREAL scale = FN(vsplat)(FN(gradient_scale)(weights, n_rows, cfg));
    const VREAL tol = FN(vsplat)((REAL)cfg->stop_tol);
    OMP_FOR
    for (int64_t o = 0; o < n_out; o++) {
        const int64_t at = o % block * ld_y + o / block * step;
        const REAL *y = y_rows + at, *d = ws->t_batch + o * ld;
        REAL *dy = dy_rows + at;
        VREAL sum = FN(vsplat)(0);
        VINT outside = {0};
        FN(output_delta_span)(y, d, weights, dy, n_rows, lanes, cfg, activation, scale, tol, &sum,
                              &outside, NULL, NULL);
        FN(keep_unit_error)(ws, o, sum, outside, cfg);
    }
    OMP_SINGLE
    FN(total_output_error)(ws, n_out);
}

/* output_error_omp on a thread's lane view (`cases` cases of its own, `lanes` lanes): dE/dx of
 * its lanes; each vector's loss term and its lanes outside stop_tol go to rows o and n_out + o of
 * ws->error_terms, for error_from_terms once every thread's are there. scale: the batch's
 * gradient_scale. */
static void FN(view_output_error)(const bp_net *net, WS *view, int64_t cases, int64_t lanes,
                                  REAL scale, const bp_train_config *cfg)
{
    const int out = net->n_layers - 1;
    const int64_t n_out = net->size[out], ld = view->ld;
    const REAL *weights = cfg->weighted ? view->t_batch + n_out * ld : NULL;
    const VREAL scales = FN(vsplat)(scale), tol = FN(vsplat)((REAL)cfg->stop_tol);
    for (int64_t o = 0; o < n_out; o++)
        FN(output_delta_span)(view->y[out] + o * ld, view->t_batch + o * ld, weights,
                              view->dy[out] + o * ld, cases, lanes, cfg, net->activation[out],
                              scales, tol, NULL, NULL, view->error_terms + o * ld,
                              view->error_terms + (n_out + o) * ld);
}

/* E and the stop test from the lane views' error_terms (view_output_error): each unit's terms
 * added from 0 in lane order, as output_error_rows_omp adds them (a term was stored as 0 + t,
 * which is t but for t = -0, and a sum from 0 is never -0, so x + (0 + t) is x + t), then the
 * units in order. */
static void FN(error_from_terms)(const bp_net *net, WS *ws, int64_t lanes,
                                 const bp_train_config *cfg)
{
    const int64_t n_out = net->size[net->n_layers - 1], ld = ws->ld;
    for (int64_t o = 0; o < n_out; o++) {
        const REAL *terms = ws->error_terms + o * ld, *misses = terms + n_out * ld;
        VREAL sum = FN(vsplat)(0);
        VINT outside = {0};
        for (int64_t lane = 0; lane < lanes; lane += VW) {
            sum += FN(vload)(terms + lane);
            outside |= FN(vload)(misses + lane) != 0;
        }
        FN(keep_unit_error)(ws, o, sum, outside, cfg);
    }
    FN(total_output_error)(ws, n_out);
}

/* The output layer's error over the first n_rows of the lanes. */
static void FN(output_error_omp)(const bp_net *net, WS *ws, int64_t n_rows, int64_t lanes,
                                 const bp_train_config *cfg)
{
    const int out = net->n_layers - 1;
    const int64_t n_out = net->size[out];
    FN(output_error_rows_omp)(ws, ws->y[out], ws->dy[out], n_out, n_out, ws->ld, 0,
                              net->activation[out], n_rows, lanes, cfg);
}

/* G[o, c] = sum over `lanes` lanes of D[o, lane] X[c, lane], for rows x cols, as lane dot
 * products (dot_block's tiles); no barrier at the end. */
static void FN(dots_omp)(const WS *ws, REAL *G, int64_t ldg, const REAL *D, int64_t ldd,
                         const REAL *X, int64_t ldx, int64_t lanes, int64_t rows, int64_t cols)
{
    const int64_t row_blocks = FN(ceil_div)(rows, DOT_ROWS);
    const int64_t col_blocks = FN(ceil_div)(cols, DOT_COLS);
    int skip = 0;
    OMP_FOR_COLLAPSE2_NOWAIT
    for (int64_t rb = 0; rb < row_blocks; rb++)
        for (int64_t cb = 0; cb < col_blocks; cb++) {
            if (FN(skip_tile)(ws, rb * col_blocks + cb, &skip))
                continue;
            const int64_t o = rb * DOT_ROWS, c = cb * DOT_COLS;
            FN(dot_block)(G + o * ldg + c, ldg, D + o * ldd, ldd, X + c * ldx, ldx, lanes,
                          MIN(DOT_ROWS, rows - o), MIN(DOT_COLS, cols - c));
        }
}

/* g[o] = the sum of D's row o over `lanes` lanes, for n rows; no barrier at the end. */
static void FN(row_sums_omp)(REAL *g, const REAL *D, int64_t ldd, int64_t n, int64_t lanes)
{
    OMP_FOR_NOWAIT
    for (int64_t o = 0; o < n; o++) {
        VREAL sum = FN(vsplat)(0);
        for (int64_t lane = 0; lane < lanes; lane += VW)
            sum += FN(vload)(D + o * ldd + lane);
        g[o] = FN(hsum)(sum);
    }
}

/* A shared net's gradient="mean": grad[p] (the sum over the parameter's copies) times
   share_scale[p] (1 / copies), for p in [lo, hi); nothing for gradient="sum". */
static inline void FN(mean_over_copies)(const bp_net *net, REAL *grad, int64_t lo, int64_t hi)
{
    if (net->share_scale)
        for (int64_t p = lo; p < hi; p++)
            grad[p] *= (REAL)net->share_scale[p];
}

/* Gradients of layer l's weights and bias; dy[l] already holds dE/dx.
 *   forward: y[o,b] = f(... + sum_c W[o,c] x[c,b] + bias[o])
 *   dE/dW[o,c] = sum_b dE/dx[o,b] x[c,b],    dE/dbias[o] = sum_b dE/dx[o,b]
 * Wide sources: dW (O, C) = D (O, B) X_rows (B, C) as broadcast tiles over the batch-major copy,
 * straight into the gradient: a shared product, or with `own` (the thread's lane view: no pack
 * buffers) each thread's share of the row tiles as a serial product, with no barrier. Narrow
 * ones: lane dot products. */
static void FN(layer_backward_weights_omp)(const bp_net *net, WS *ws, REAL *grad, int l,
                                           int64_t n_rows, int64_t lanes, WS *own)
{
    const int64_t n_out = net->size[l], ld = ws->ld;
    const REAL *dx = ws->dy[l];
    for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
        const int src = net->src_layer[e];
        const int64_t n_in = net->size[src];
        /* rows r0 .. r0 + rows - 1 (all of them unless a shared block's others are absent:
           their gradients are never read) */
        const int64_t r0 = net->row_start ? net->row_start[e] : 0;
        const int64_t rows = net->row_start ? net->row_end[e] - r0 : n_out;
        REAL *grad_w = grad + net->w_offset[e] + r0 * n_in;
        const REAL *dx_rows = dx + r0 * ld;
        if (rows <= 0)
            continue;
        if (ws->y_rows[src] && own) {
            const int64_t tiles = FN(ceil_div)(rows, TILE_ROWS), t = THREAD_INDEX;
            const int64_t first = tiles * t / THREAD_COUNT * TILE_ROWS;
            const int64_t end = MIN(tiles * (t + 1) / THREAD_COUNT * TILE_ROWS, rows);
            if (end > first)
                FNS(product_omp)(own, grad_w + first * n_in, n_in, dx_rows + first * ld, ld, 1,
                                 ws->y_rows[src], ws->ld_rows[src], end - first,
                                 ws->ld_rows[src], n_rows, NULL, 0, -1, n_in);
        } else if (ws->y_rows[src]) {
            FN(product_omp)(ws, grad_w, n_in, dx_rows, ld, 1, ws->y_rows[src], ws->ld_rows[src],
                            rows, ws->ld_rows[src], n_rows, NULL, 0, -1, n_in);
        } else {
            FN(dots_omp)(ws, grad_w, n_in, dx_rows, ld, ws->y[src], ld, lanes, rows, n_in);
        }
    }
    if (net->bias_offset[l] >= 0)
        FN(row_sums_omp)(grad + net->bias_offset[l], dx, ld, n_out, lanes);
}

/* Gradients flowing down to layer l's computed sources.
 *   dE/dy_src[c, b] (+)= sum_o W[o, c] dE/dx[o, b]
 * The first consumer of a source (the highest layer) writes, the rest add. */
static void FN(layer_backward_inputs_omp)(const bp_net *net, WS *ws, const REAL *params, int l,
                                          int64_t lanes)
{
    const int64_t n_out = net->size[l], ld = ws->ld;
    int waited = 0; /* a loop below ended in a barrier */
    for (int e = net->src_start[l]; e < net->src_start[l + 1]; e++) {
        const int src = net->src_layer[e];
        if (src < net->n_inputs)
            continue;
        const int64_t n_in = net->size[src];
        const int64_t r0 = net->row_start ? net->row_start[e] : 0; /* as in the weights' */
        const int64_t rows = net->row_start ? net->row_end[e] - r0 : n_out;
        if (rows > 0) {
            FN(product_omp)(ws, ws->dy[src], ld, params + net->w_offset[e] + r0 * n_in, 1, n_in,
                            ws->dy[l] + r0 * ld, ld, n_in, lanes, rows, NULL,
                            net->accumulate[e], -1, lanes);
            waited = 1;
        } else if (!net->accumulate[e]) { /* a block of absent connections passes nothing down */
            OMP_FOR
            for (int64_t c = 0; c < n_in; c++)
                memset(ws->dy[src] + c * ld, 0, (size_t)lanes * sizeof(REAL));
            waited = 1;
        }
    }
    /* the weight gradients' nowait loops are done once a barrier follows them: a product's last
       (or, cut short by a stop, the barrier it leaves after), the zeroing loop's */
    if (!waited) {
        OMP_BARRIER
    }
}

/* Turn layer l's dE/dy (complete once every higher layer has run) into dE/dx. Under dropout
 * (a hidden layer, y its outputs after dropout_omp) dE/dx = dE/dy_after mask scale f'(y_before),
 * with y_before = y (1 - dropout) for the kept (f' of a dropped unit is multiplied by 0). */
static void FN(layer_activation_backward_omp)(const bp_net *net, WS *ws, int l, int64_t lanes,
                                              double dropout)
{
    const int64_t n = net->size[l], ld = ws->ld;
    const int activation = net->activation[l];
    if (activation == BP_IDENTITY && dropout == 0)
        return;
    const uint32_t threshold = bp_dropout_threshold(dropout);
    const REAL scale = (REAL)(1.0 / (1.0 - dropout)), keep = (REAL)(1.0 - dropout);
    REAL *const dy_layer = ws->dy[l];
    const REAL *const y_layer = ws->y[l];
    int skip = 0;
    OMP_FOR
    for (int64_t u = 0; u < n; u++) {
        if (FN(skip_tile)(ws, u, &skip))
            continue;
        REAL *dy = dy_layer + u * ld;
        const REAL *y = y_layer + u * ld;
        if (dropout > 0) {
            const uint32_t stream = bp_dropout_stream(ws->dropout_key, l, u);
            for (int64_t lane = 0; lane < lanes; lane += VW)
                FN(vstore)(dy + lane,
                           FN(vselect)(FN(dropout_keep)(stream, ws->lane0 + lane, threshold),
                                       FN(vload)(dy + lane) * scale *
                                           FN(vderivative)(FN(vload)(y + lane) * keep,
                                                           activation),
                                       FN(vsplat)(0)));
            continue;
        }
        /* the activation's switch once a row (per vector, the compiler kept it inside the loop,
           with the loads of ws->dy and ws->y); rows are whole, aligned vectors (ws->ld) */
        FN(vderivative_times)((VREAL *)dy, (const VREAL *)y, (int)(lanes / VW), activation);
    }
}

/* The calling thread's share of the batch's lanes (whole vectors, in thread order: the cases it
 * bound, as bind_rows_omp splits them) as a workspace of its own, `view`: its layers' rows start
 * at the share's first lane (view->lane0), and it has no pack buffers, so products read their
 * operands in place. The serial kernels (FNS) run on it with no barrier: a case's forward pass
 * and its errors down to every unit need no other case. Returns the share's cases (its lanes:
 * the next multiple of VW), at least one when there are as many vectors as threads. */
static int64_t FN(lane_view)(const bp_net *net, const WS *ws, WS *view, int64_t n_rows)
{
    const int64_t vectors = FN(ceil_div)(n_rows, VW), t = THREAD_INDEX, n = THREAD_COUNT;
    const int64_t lane0 = vectors * t / n * VW, cases = MIN(vectors * (t + 1) / n * VW, n_rows);
    *view = *ws;
    view->y = ws->view_ptrs + 3 * net->n_layers * t;
    view->dy = view->y + net->n_layers;
    view->y_rows = view->dy + net->n_layers;
    for (int l = 0; l < net->n_layers; l++) {
        view->y[l] = ws->y[l] + lane0;
        view->dy[l] = ws->dy[l] ? ws->dy[l] + lane0 : NULL;
        view->y_rows[l] = ws->y_rows[l] ? ws->y_rows[l] + lane0 * ws->ld_rows[l] : NULL;
    }
    view->x_batch = ws->x_batch + lane0;
    view->t_batch = ws->t_batch + lane0;
    view->error_terms = ws->error_terms + lane0;
    view->pack = view->pack_a = NULL;
    view->lane0 = lane0;
    return MAX(cases - lane0, 0);
}

/* Whether loss_gradient_omp splits the batch's lanes between the threads (lane_view): with
 * every thread given a vector of them, the call's views (API(train)), and weights that stay in
 * a core's L2 cache. A batch then waits at 2 barriers from the forward pass to the gradient
 * instead of 16, and each thread's products read the activations it wrote, not half of them
 * from the other core: issue 12's net 0.79-0.96 of the time on two threads. But each thread
 * reads every weight, where a shared product reads its rows: W4's 8 MiB of weights trained
 * 1.05x slower on avx2 (bench/results/2026-12-02-session27.md). */
#define LANE_VIEW_MAX_WEIGHT_BYTES 1048576
static inline int FN(splits_lanes)(const bp_net *net, const WS *ws, int64_t n_rows)
{
    return THREAD_COUNT > 1 && ws->view_ptrs && ws->error_terms &&
           FN(ceil_div)(n_rows, VW) >= THREAD_COUNT &&
           net->n_params * (int64_t)sizeof(REAL) <= LANE_VIEW_MAX_WEIGHT_BYTES;
}

/* loss_gradient_omp with the lanes split (splits_lanes): the forward pass, the output error and
 * the errors down to every unit on the thread's own lanes; then the sums over all cases: E and
 * the stop test by one thread (error_from_terms) while the threads share the weight gradients.
 * Every result is computed by the same operations in the same order as when the products are
 * shared. */
static void FN(loss_gradient_lanes_omp)(const bp_net *net, WS *ws, REAL *grad,
                                        const REAL *params, int64_t n_rows,
                                        const bp_train_config *cfg)
{
    const int64_t lanes = FN(ceil_div)(n_rows, VW) * VW;
    WS view;
    const int64_t cases = FN(lane_view)(net, ws, &view, n_rows);
    const int64_t view_lanes = FN(ceil_div)(cases, VW) * VW;
    const int64_t n_out = net->size[net->n_layers - 1];
    const REAL scale = FN(gradient_scale)(cfg->weighted ? ws->t_batch + n_out * ws->ld : NULL,
                                          n_rows, cfg);
    FNS(forward_omp)(net, &view, params, cases, 1, cfg->dropout);
    FN(view_output_error)(net, &view, cases, view_lanes, scale, cfg);
    for (int l = net->n_layers - 1; l >= net->n_inputs; l--) {
        if (l != net->n_layers - 1)
            FNS(layer_activation_backward_omp)(net, &view, l, view_lanes, cfg->dropout);
        FNS(layer_backward_inputs_omp)(net, &view, params, l, view_lanes);
    }
    OMP_BARRIER
    OMP_SINGLE_NOWAIT
    FN(error_from_terms)(net, ws, lanes, cfg);
    for (int l = net->n_layers - 1; l >= net->n_inputs; l--)
        FN(layer_backward_weights_omp)(net, ws, grad, l, n_rows, lanes, &view);
    OMP_BARRIER /* none of them waits */
}

/* Forward and backward over the bound batch of n_rows: grad = dE/dparams; ws->error. */
static void FN(loss_gradient_omp)(const bp_net *net, WS *ws, REAL *grad, const REAL *params,
                                  int64_t n_rows, const bp_train_config *cfg)
{
    const int64_t lanes = FN(ceil_div)(n_rows, VW) * VW;
    if (FN(splits_lanes)(net, ws, n_rows)) {
        FN(loss_gradient_lanes_omp)(net, ws, grad, params, n_rows, cfg);
        return;
    }
    FN(forward_omp)(net, ws, params, n_rows, 1, cfg->dropout);
    FN(output_error_omp)(net, ws, n_rows, lanes, cfg);
    for (int l = net->n_layers - 1; l >= net->n_inputs; l--) {
        if (l != net->n_layers - 1)
            FN(layer_activation_backward_omp)(net, ws, l, lanes, cfg->dropout);
        FN(layer_backward_weights_omp)(net, ws, grad, l, n_rows, lanes, NULL);
        FN(layer_backward_inputs_omp)(net, ws, params, l, lanes);
    }
}

/* What the gradient is multiplied by for clipping: clip_norm / |grad| if that is below 1, else
   1. One thread, in a fixed order. The squares are of grad / max |grad|, so that a float32
   gradient beyond 1.8e19 (whose square overflows) still gets its norm. */
static REAL FN(clip_scale)(const REAL *grad, int64_t n, double clip_norm)
{
    VREAL top = FN(vsplat)(0);
    int64_t i = 0;
    for (; i + VW <= n; i += VW) {
        const VREAL g = FN(vload)(grad + i);
        const VREAL a = FN(vselect)(g < 0, -g, g);
        top = FN(vselect)(a > top, a, top);
    }
    REAL largest = 0;
    for (int j = 0; j < VW; j++)
        largest = top[j] > largest ? top[j] : largest;
    for (; i < n; i++)
        largest = FABS(grad[i]) > largest ? FABS(grad[i]) : largest;
    if (!(largest > 0))
        return 1; /* a zero gradient; NaNs are left for the update to report */
    const REAL inv = (REAL)1 / largest;
    VREAL acc[4] = {0};
    for (i = 0; i + 4 * VW <= n; i += 4 * VW)
        for (int a = 0; a < 4; a++) {
            const VREAL g = FN(vload)(grad + i + a * VW) * inv;
            acc[a] += g * g;
        }
    double sum = (double)FN(hsum)((acc[0] + acc[1]) + (acc[2] + acc[3]));
    for (; i < n; i++)
        sum += (double)(grad[i] * inv) * (double)(grad[i] * inv);
    const double norm = (double)largest * sqrt(sum);
    return norm > clip_norm ? (REAL)(clip_norm / norm) : (REAL)1;
}

/* One update of the phase's rule with the gradient g = gscale grad (gscale: clipping, else 1):
 *   momentum, the paper's eq. 9:  dw(t) = -lr g + momentum dw(t-1);  w += dw(t)
 *   adam, as scikit-learn writes it, with t the updates made before this one plus 1:
 *     m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
 *     w -= lr sqrt(1 - b2^t) / (1 - b1^t) m / (sqrt(v) + eps)
 * then the family-trees decay w *= (1 - weight_decay) for w[:n_decayed]. Adam's count t is not
 * advanced here (every thread reads it first): the caller calls count_update after a barrier.
 * Sets *non_finite if a weight became NaN or infinite (w - w is 0 exactly for finite w); the
 * caller needs a barrier before reading it. */
static void FN(update_params_omp)(REAL *BP_RESTRICT params, REAL *BP_RESTRICT state,
                                  const REAL *BP_RESTRICT grad, int64_t n_params,
                                  const bp_phase *phase, REAL gscale, int *non_finite)
{
    const REAL lr = (REAL)phase->lr, momentum = (REAL)phase->momentum;
    const REAL keep = (REAL)(1.0 - phase->weight_decay);
    const int64_t n_decayed = phase->weight_decay != 0 ? phase->n_decayed : 0;
    int bad = 0;
    if (phase->rule == BP_ADAM) {
        REAL *BP_RESTRICT m = state, *BP_RESTRICT v = state + n_params;
        const double t = (double)state[2 * n_params] + 1;
        const REAL step = (REAL)(phase->lr * sqrt(1 - pow(phase->beta2, t)) /
                                 (1 - pow(phase->momentum, t)));
        const REAL b2 = (REAL)phase->beta2, eps = (REAL)phase->epsilon;
        const REAL m_rate = (REAL)(1 - phase->momentum), v_rate = (REAL)(1 - phase->beta2);
        /* the decayed weights, then the rest (times 1, exactly themselves): a test of i inside
           the loop kept GCC from vectorising it under Python's -fwrapv, in the OpenMP copy
           (scalar square roots and divisions: 15% of a two-thread fit of a 100-100-10 net) */
        for (int rest = 0; rest < 2; rest++) {
            const int64_t first = rest ? n_decayed : 0, end = rest ? n_params : n_decayed;
            const REAL factor = rest ? (REAL)1 : keep;
            OMP_FOR_NOWAIT
            for (int64_t i = first; i < end; i++) {
                const REAL g = gscale * grad[i];
                const REAL mi = momentum * m[i] + m_rate * g;
                const REAL vi = b2 * v[i] + v_rate * (g * g);
                const REAL w = (params[i] - step * mi / (SQRT(vi) + eps)) * factor;
                m[i] = mi;
                v[i] = vi;
                params[i] = w;
                /* the moments too: a square that overflows makes v infinite and freezes w */
                bad |= !(w - w == 0) | !(mi - mi == 0) | !(vi - vi == 0);
            }
        }
    } else {
        REAL *BP_RESTRICT velocity = state;
        OMP_FOR_NOWAIT
        for (int64_t i = 0; i < n_decayed; i++) {
            const REAL v = momentum * velocity[i] - lr * (gscale * grad[i]);
            const REAL w = (params[i] + v) * keep;
            velocity[i] = v;
            params[i] = w;
            bad |= !(w - w == 0);
        }
        OMP_FOR_NOWAIT
        for (int64_t i = n_decayed; i < n_params; i++) {
            const REAL v = momentum * velocity[i] - lr * (gscale * grad[i]);
            const REAL w = params[i] + v;
            velocity[i] = v;
            params[i] = w;
            bad |= !(w - w == 0);
        }
    }
    if (bad) {
        OMP_ATOMIC_WRITE
        *non_finite = 1;
    }
}

/* After every thread's update_params_omp: Adam counts the update (a count past 2^24 stops
   growing in float, where b^t is long zero). */
static inline void FN(count_update)(REAL *state, int64_t n_params, const bp_phase *phase)
{
    if (phase->rule == BP_ADAM)
        state[2 * n_params] += 1;
}
