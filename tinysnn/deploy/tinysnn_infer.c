/* tinysnn_infer.c: portable C99 reference inference of an exported tinysnn model.
 *
 * Include the generated model.h (tinysnn-search export --format c, tinysnn train --export DIR
 * --format c) in the same folder. No malloc: every buffer is sized by the header. A qWN model
 * (TINYSNN_VMEM_FIXED 1) runs on integers alone; FP32 and qW models keep V_mem in float32 as the
 * simulator does (compile in ISO C mode, e.g. -std=c99, so that float expressions are not fused).
 * Both compute exactly what tinysnn's numpy runner computes (docs/deploy.md).
 *
 *   void tinysnn_run(const uint8_t *train, int64_t sample_seed, int32_t counts[TINYSNN_N]);
 *       train: TINYSNN_T x TINYSNN_N_INPUT bytes, 1 where input i fires at step t (row t);
 *       sample_seed: keys stochastic rounding (only a stochastic qWN model reads it).
 *   int tinysnn_predict(const int32_t counts[TINYSNN_N]);  class, or -1 when no voter fired
 *
 * With -DTINYSNN_MAIN a main() reads "B" then B samples ("seed" and T x n_in bytes, binary)
 * from stdin and prints "prediction count_0 ... count_{N-1}" per sample.
 */
#include <stdint.h>
#include <string.h>

#include "model.h"

#define N TINYSNN_N
#define N_IN TINYSNN_N_INPUT

/* codes first .. first + count - 1 of `bits` bits (1..32), packed big-endian (tinysnn.deploy.packing),
   decoded word-wise: whole bytes enter a 64-bit window, each code is one shift and mask */
static void decode_codes(const uint8_t *packed, int64_t first, int64_t count, int bits, uint32_t *out) {
    int64_t bit = first * (int64_t)bits, k;
    const uint8_t *p = packed + (bit >> 3);
    int have = 8 - (int)(bit & 7); /* bits of the window not yet decoded */
    uint64_t window = (uint64_t)(*p++ & (0xFFu >> (bit & 7)));
    uint64_t mask = (UINT64_C(1) << bits) - 1u;
    for (k = 0; k < count; ++k) {
        while (have < bits) {
            window = (window << 8) | *p++;
            have += 8;
        }
        have -= bits;
        out[k] = (uint32_t)((window >> have) & mask);
        window &= (UINT64_C(1) << have) - 1u;
    }
}

#if TINYSNN_VMEM_FIXED
static int64_t signed_code(uint32_t v, int bits, int is_signed) {
    if (is_signed && ((v >> (bits - 1)) & 1u)) return (int64_t)v - ((int64_t)1 << bits);
    return (int64_t)v;
}
#else
static float float_of(uint32_t pattern) {
    float f;
    memcpy(&f, &pattern, sizeof f);
    return f;
}
#endif

#if TINYSNN_VMEM_FIXED && TINYSNN_ROUNDING == 3
/* tinysnn.streams: murmur3's 64-bit finalizer and the keyed draws of stochastic rounding */
static uint64_t fmix64(uint64_t z) {
    z ^= z >> 33;
    z *= UINT64_C(0xFF51AFD7ED558CCD);
    z ^= z >> 33;
    z *= UINT64_C(0xC4CEB9FE1A85EC53);
    return z ^ (z >> 33);
}
#define GOLDEN UINT64_C(0x9E3779B97F4A7C15)
static uint64_t stream_base(int64_t sample_seed, int64_t net_seed, int64_t param) {
    return fmix64((uint64_t)sample_seed * UINT64_C(0x2545F4914F6CDD1D) + (uint64_t)net_seed * UINT64_C(0x5851F42D4C957F2D) +
                  (uint64_t)param * UINT64_C(0x14057B7EF767814F));
}
static uint64_t step_key(uint64_t base, int64_t step) { return fmix64(base + (uint64_t)(step + 1) * GOLDEN); }
static int64_t uniform_bits(uint64_t key, int64_t index) {
    return (int64_t)((fmix64(key + (uint64_t)index * GOLDEN) >> 40) & UINT64_C(0xFFFFFF));
}
#define STREAM_BASE(seed, param) stream_base(seed, TINYSNN_SEED, param)
#define STEP_KEY(base, t) step_key(base, t)
#else
#define STREAM_BASE(seed, param) ((void)(seed), (uint64_t)0)
#define STEP_KEY(base, t) ((void)(base), (uint64_t)0)
#endif

#if TINYSNN_VMEM_FIXED
static int64_t floor_shift(int64_t x, int s) { /* floor(x / 2^s), without relying on >> of negatives */
    int64_t d = (int64_t)1 << s;
    return x >= 0 ? x / d : -((-x + d - 1) / d);
}
/* one decrement of the leak toward rest: rounded toward zero, or (stochastic rounding) up one step
   where the decay's own draw is below the remainder (|u| leak) mod 2^24 */
static int64_t decay_toward_zero(int64_t u, int64_t leak, uint64_t key, int64_t j) {
    int64_t mag = u < 0 ? -u : u;
    int64_t product = mag * leak; /* mag >= 0 */
    int64_t step = product >> 24;
#if TINYSNN_ROUNDING == 3
    if (uniform_bits(key, j) < (product & INT64_C(0xFFFFFF))) step += 1;
#endif
    (void)key;
    (void)j;
    return u > 0 ? u - step : u + step;
}
static int64_t round_back(int64_t x, uint64_t key, int64_t j) {
#if TINYSNN_SHIFT > 0
    int64_t k = floor_shift(x, TINYSNN_SHIFT);
    int64_t rem = x - k * ((int64_t)1 << TINYSNN_SHIFT);
    (void)rem; /* truncation needs no remainder */
#if TINYSNN_ROUNDING == 2
    if (rem >= ((int64_t)1 << (TINYSNN_SHIFT - 1))) k += 1;
#elif TINYSNN_ROUNDING == 3
    if (uniform_bits(key, j) * ((int64_t)1 << TINYSNN_SHIFT) < rem * ((int64_t)1 << 24)) k += 1;
#endif
    x = k;
#endif
    (void)key;
    (void)j;
    return x < TINYSNN_VMEM_LO ? TINYSNN_VMEM_LO : (x > TINYSNN_VMEM_HI ? TINYSNN_VMEM_HI : x);
}
#define SCALE(x, s) ((x) * ((int64_t)1 << (s))) /* left shift without undefined behaviour */
#endif

#if !TINYSNN_W_FIXED
typedef double tinysnn_acc_t; /* FP32 weights: summed in float64, as the simulator */
#elif TINYSNN_WIDE_SUMS
typedef int64_t tinysnn_acc_t;
#else
typedef int32_t tinysnn_acc_t; /* every sum of codes fits */
#endif

/* RAM: the whole state of a run, TINYSNN_RAM_BYTES (model.h); every array holds NP elements, a
   multiple of 8, so the struct has no padding. The model itself is const (flash). */
#define NP ((N + 7) / 8 * 8)
static struct {
    tinysnn_acc_t acc[NP];
#if TINYSNN_VMEM_FIXED
    int64_t u[NP], cur[NP], over[NP], thr_rel[NP];
#if TINYSNN_BASELINE
    int64_t ui[NP];
#endif
#else
    float v[NP], cur[NP], over[NP], thr[NP];
#if TINYSNN_BASELINE
    float vi[NP];
#endif
#endif
    uint32_t row[NP]; /* one input's weight codes, or the thresholds' codes, decoded */
    int32_t ref[NP];
    uint8_t s[NP], cross[NP];
#if TINYSNN_BASELINE
    int32_t refi[NP];
    uint8_t si[NP], si_new[NP];
#endif
} st;

#if !TINYSNN_W_FIXED
/* acc += the FP32 weights of the inputs that fire in `row`, in float64 and input order as the
   simulator adds them. model.h holds the weights as float32 values, a contiguous row per input;
   the rows of up to four firing inputs are added in one pass over the neurons, each add still one
   float64 add in input order (a += w0; a += w1; ...), so the sums are the same numbers. The train
   is scanned eight bytes at a time, skipping words where no input fires. */
static void add_rows(const float *const *w, int k) {
    int64_t j;
    if (k == 4)
        for (j = 0; j < N; ++j) {
            double a = st.acc[j];
            a += (double)w[0][j];
            a += (double)w[1][j];
            a += (double)w[2][j];
            a += (double)w[3][j];
            st.acc[j] = a;
        }
    else
        for (; k > 0; --k, ++w)
            for (j = 0; j < N; ++j) st.acc[j] += (double)(*w)[j];
}
static void input_sums(const uint8_t *row) {
    const float *w[4];
    int64_t i, i0, end, j;
    int k = 0;
    for (j = 0; j < N; ++j) st.acc[j] = 0;
    for (i0 = 0; i0 < N_IN; i0 = end) {
        end = i0 + 8 < N_IN ? i0 + 8 : N_IN;
        if (end - i0 == 8) {
            uint64_t word;
            memcpy(&word, row + i0, sizeof word);
            if (!word) continue;
        }
        for (i = i0; i < end; ++i) {
            if (!row[i]) continue;
            w[k++] = tinysnn_weights + i * N;
            if (k == 4) {
                add_rows(w, 4);
                k = 0;
            }
        }
    }
    add_rows(w, k);
}
#else
/* acc += the weight codes of the inputs that fire in `row`: integer adds, exact in any order */
static void input_sums(const uint8_t *row) {
    int64_t i, j;
    for (j = 0; j < N; ++j) st.acc[j] = 0;
    for (i = 0; i < N_IN; ++i) {
        if (!row[i]) continue;
#if TINYSNN_W_BITS == 8 /* one code a byte: the packed row is the codes */
        {
            const uint8_t *w = tinysnn_weights + i * N;
            for (j = 0; j < N; ++j) st.acc[j] += w[j];
        }
#elif TINYSNN_W_BITS == 32 /* four bytes a code, big-endian: assembled in place */
        {
            const uint8_t *w = tinysnn_weights + i * N * 4;
            for (j = 0; j < N; ++j, w += 4) {
                uint32_t code = (uint32_t)w[0] << 24 | (uint32_t)w[1] << 16 | (uint32_t)w[2] << 8 | (uint32_t)w[3];
                st.acc[j] += code;
            }
        }
#else
        decode_codes(tinysnn_weights, i * N, N, TINYSNN_W_BITS, st.row);
        for (j = 0; j < N; ++j) st.acc[j] += st.row[j];
#endif
    }
}
#endif

void tinysnn_run(const uint8_t *train, int64_t sample_seed, int32_t counts[N]) {
#if TINYSNN_VMEM_FIXED
    uint64_t base_e = STREAM_BASE(sample_seed, 4), base_ed = STREAM_BASE(sample_seed, 7);
#if TINYSNN_BASELINE
    uint64_t base_i = STREAM_BASE(sample_seed, 5), base_id = STREAM_BASE(sample_seed, 8);
#endif
#endif
    int64_t t, j;
    (void)sample_seed;
    /* thresholds, decoded once a run: V_th - v_rest at the grid G (qWN), or V_th in float32 */
#if TINYSNN_VMEM_FIXED
    decode_codes(tinysnn_theta, 0, N, TINYSNN_VTH_BITS, st.row);
    for (j = 0; j < N; ++j)
        st.thr_rel[j] = TINYSNN_VTH_G - TINYSNN_VR_G +
                        SCALE(signed_code(st.row[j], TINYSNN_VTH_BITS, TINYSNN_VTH_SIGNED), TINYSNN_G - TINYSNN_VTH_FRAC);
#else
    decode_codes(tinysnn_vth, 0, N, 32, st.row);
    for (j = 0; j < N; ++j) st.thr[j] = float_of(st.row[j]);
#endif
    for (j = 0; j < N; ++j) {
        st.s[j] = 0;
        st.ref[j] = 0;
        counts[j] = 0;
#if TINYSNN_VMEM_FIXED
        st.u[j] = 0;
#else
        st.v[j] = TINYSNN_VR;
#endif
#if TINYSNN_BASELINE
        st.si[j] = 0;
        st.refi[j] = 0;
#if TINYSNN_VMEM_FIXED
        st.ui[j] = TINYSNN_INH_REST;
#else
        st.vi[j] = TINYSNN_VR_I;
#endif
#endif
    }
    for (t = 0; t < TINYSNN_T; ++t) {
        int64_t nlat = 0, ncross = 0, best = -1;
        const uint8_t *lat;
        input_sums(train + t * N_IN);
#if TINYSNN_VMEM_FIXED
        uint64_t key_e = STEP_KEY(base_e, t), key_ed = STEP_KEY(base_ed, t);
        for (j = 0; j < N; ++j) st.cur[j] = SCALE((int64_t)st.acc[j], TINYSNN_F - TINYSNN_W_FRAC);
#if TINYSNN_BASELINE
        uint64_t key_i = STEP_KEY(base_i, t), key_id = STEP_KEY(base_id, t);
        for (j = 0; j < N; ++j) {
            int64_t x = SCALE(decay_toward_zero(st.ui[j] - TINYSNN_INH_REST, TINYSNN_LEAK_INH, key_id, j) + TINYSNN_INH_REST,
                              TINYSNN_SHIFT);
            if (st.refi[j] <= 0) x += TINYSNN_W_EI_F * st.s[j];
            x = round_back(x, key_i, j);
            st.refi[j] -= 1;
            st.si_new[j] = SCALE(x + TINYSNN_VR_V, TINYSNN_G - TINYSNN_FV) > TINYSNN_VTH_I_G;
            if (st.si_new[j]) {
                st.refi[j] = TINYSNN_REFR_I;
                x = TINYSNN_K_RESET_I;
            }
            st.ui[j] = x;
        }
        lat = st.si;
#else
        lat = st.s;
#endif
        for (j = 0; j < N; ++j) nlat += lat[j];
        if (nlat > 0)
            for (j = 0; j < N; ++j) st.cur[j] -= TINYSNN_W_LAT_F * (nlat - lat[j]);
        for (j = 0; j < N; ++j) {
            int64_t x = SCALE(decay_toward_zero(st.u[j], TINYSNN_LEAK_EXC, key_ed, j), TINYSNN_SHIFT);
            if (st.ref[j] <= 0) x += st.cur[j];
            x = round_back(x, key_e, j);
            st.ref[j] -= 1;
            st.over[j] = SCALE(x, TINYSNN_G - TINYSNN_FV) - st.thr_rel[j];
            st.cross[j] = st.over[j] > 0;
            if (st.cross[j]) {
                st.ref[j] = TINYSNN_REFR;
                x = TINYSNN_K_RESET;
            }
            st.u[j] = x;
        }
#else /* V_mem in float32, as the simulator */
#if TINYSNN_W_FIXED
        for (j = 0; j < N; ++j) st.cur[j] = (float)((double)st.acc[j] * TINYSNN_W_SCALE);
#else
        for (j = 0; j < N; ++j) st.cur[j] = (float)st.acc[j];
#endif
#if TINYSNN_BASELINE
        for (j = 0; j < N; ++j) {
            float x = TINYSNN_VR_I + (st.vi[j] - TINYSNN_VR_I) * TINYSNN_DEC_I;
            if (st.refi[j] <= 0) x = x + TINYSNN_W_EI * (st.s[j] ? 1.0f : 0.0f);
            st.refi[j] -= 1;
            st.si_new[j] = x > TINYSNN_VTH_I;
            if (st.si_new[j]) {
                st.refi[j] = TINYSNN_REFR_I;
                x = TINYSNN_VRES_I;
            }
            st.vi[j] = x;
        }
        lat = st.si;
#else
        lat = st.s;
#endif
        for (j = 0; j < N; ++j) nlat += lat[j];
        if (nlat > 0)
            for (j = 0; j < N; ++j) st.cur[j] = st.cur[j] - TINYSNN_W_LAT * (float)(nlat - lat[j]);
        for (j = 0; j < N; ++j) {
            float x = TINYSNN_VR + (st.v[j] - TINYSNN_VR) * TINYSNN_DEC;
            if (st.ref[j] <= 0) x = x + st.cur[j];
            st.ref[j] -= 1;
            st.cross[j] = x > st.thr[j];
            st.over[j] = x - st.thr[j];
            if (st.cross[j]) {
                st.ref[j] = TINYSNN_REFR;
                x = TINYSNN_VRES;
            }
            st.v[j] = x;
        }
#endif
        for (j = 0; j < N; ++j) ncross += st.cross[j];
        if (ncross == 0) /* no neuron crossed: no spike, and the counts stay */
            memset(st.s, 0, sizeof st.s);
        else
            for (j = 0; j < N; ++j) {
#if TINYSNN_ONE_SPIKE
                if (st.cross[j] && (best < 0 || st.over[j] > st.over[best])) best = j;
                st.s[j] = 0;
#else
                st.s[j] = st.cross[j];
                counts[j] += st.s[j];
#endif
            }
        if (best >= 0) {
            st.s[best] = 1;
            counts[best] += 1;
        }
#if TINYSNN_BASELINE
        for (j = 0; j < N; ++j) st.si[j] = st.si_new[j];
#endif
    }
}

int tinysnn_predict(const int32_t counts[N]) {
    float score[TINYSNN_CLASSES], best_score = 0.0f;
    int32_t sum[TINYSNN_CLASSES], members[TINYSNN_CLASSES];
    int c, j, best = 0;
    for (c = 0; c < TINYSNN_CLASSES; ++c) sum[c] = members[c] = 0;
    for (j = 0; j < N; ++j)
        if (tinysnn_labels[j] >= 0) {
            sum[tinysnn_labels[j]] += counts[j];
            members[tinysnn_labels[j]] += 1;
        }
    for (c = 0; c < TINYSNN_CLASSES; ++c) {
        score[c] = (float)sum[c] / (float)(members[c] > 0 ? members[c] : 1);
        if (c == 0 || score[c] > score[best]) best = c;
    }
    best_score = score[best];
    return best_score > 0.0f ? best : -1;
}

#ifdef TINYSNN_MAIN
#include <stdio.h>
#include <time.h>
static uint8_t train_buffer[TINYSNN_T * N_IN];
int main(void) { /* -DTINYSNN_TIMING: the seconds spent in tinysnn_run go to stderr */
    int32_t counts[N];
    int64_t b, samples, seed;
    int j;
    clock_t busy = 0, t0;
    if (scanf("%lld", (long long *)&samples) != 1) return 1;
    getchar();
    for (b = 0; b < samples; ++b) {
        if (fread(&seed, sizeof seed, 1, stdin) != 1) return 1;
        if (fread(train_buffer, 1, sizeof train_buffer, stdin) != sizeof train_buffer) return 1;
        t0 = clock();
        tinysnn_run(train_buffer, seed, counts);
        busy += clock() - t0;
        printf("%d", tinysnn_predict(counts));
        for (j = 0; j < N; ++j) printf(" %d", counts[j]);
        printf("\n");
    }
#ifdef TINYSNN_TIMING
    fprintf(stderr, "seconds %.6f\n", (double)busy / CLOCKS_PER_SEC);
#endif
    return 0;
}
#endif
