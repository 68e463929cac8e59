/* Times a forest compiled to native code by another project, on the same raw float32 rows that
 * `time_engine` reads, for the `bench/trees` harness: single-row calls without a Python call in
 * between (which would cost more than the prediction), and, for reference, a whole batch.
 *
 *   tl2cgen: cc -O2 time_native.c -ldl -o time_native
 *            time_native tl2cgen LIB.so ROWS.f32 N_FEATURES N_OUT [--reps N] [--single-reps N] [--out F]
 *   lleaves: cc -O2 -DLLEAVES time_native.c MODEL.o -o time_lleaves_MODEL
 *            time_lleaves_MODEL lleaves - ROWS.f32 N_FEATURES N_OUT [...]
 *
 * tl2cgen: the library's `predict(union Entry *row, int pred_margin, double *out)` (zeroed `out`,
 * post-processing on), each row first turned into its `Entry` array (NaN: missing = -1), as
 * tl2cgen's own runtime does. lleaves: `forest_root(double *rows, double *out, int start, int end)`
 * on rows widened to double, as lleaves' `predict` does. Prints one JSON object: median
 * nanoseconds of a whole batch and of one single-row call (cycling through the rows, so the
 * branch predictor cannot learn one path), each over N repetitions. `--out` writes the batch's
 * outputs (little-endian f64, N_OUT per row) for the harness to compare.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifndef LLEAVES
#include <dlfcn.h>
#endif

/* tl2cgen's input entry, in the two widths it generates: `double` thresholds (LightGBM,
 * scikit-learn) or `float` (XGBoost). The leaf output type is chosen the same way. */
union Entry {
    int missing;
    double fvalue;
    int qvalue;
};
union Entry32 {
    int missing;
    float fvalue;
    int qvalue;
};

typedef void (*tl2cgen_predict)(void *, int, void *);
#ifdef LLEAVES
extern void forest_root(double *, double *, int, int);
#endif

static size_t n_features, n_out;
static tl2cgen_predict tl_predict;
static int is_lleaves, f32_entries, f32_out;
static float *out32; /* tl2cgen's float32 outputs, one row */

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2.0;
}

/* Predicts rows [start, end) of `rows` (f32) into `out`, using `scratch` (n_features entries). */
static void run(const float *rows, size_t start, size_t end, double *out, void *scratch) {
    if (is_lleaves) {
#ifdef LLEAVES
        double *d = scratch;
        for (size_t i = 0; i < (end - start) * n_features; i++) d[i] = rows[start * n_features + i];
        memset(out, 0, (end - start) * n_out * sizeof(double));
        forest_root(d, out, 0, (int)(end - start));
#endif
        return;
    }
    for (size_t r = start; r < end; r++) {
        const float *x = rows + r * n_features;
        if (f32_entries) {
            union Entry32 *e = scratch;
            for (size_t j = 0; j < n_features; j++) {
                if (isnan(x[j]))
                    e[j].missing = -1;
                else
                    e[j].fvalue = x[j];
            }
        } else {
            union Entry *e = scratch;
            for (size_t j = 0; j < n_features; j++) {
                if (isnan(x[j]))
                    e[j].missing = -1;
                else
                    e[j].fvalue = x[j];
            }
        }
        double *o = out + (r - start) * n_out;
        if (f32_out) {
            memset(out32, 0, n_out * sizeof(float));
            tl_predict(scratch, 0, out32);
            for (size_t j = 0; j < n_out; j++) o[j] = out32[j];
        } else {
            memset(o, 0, n_out * sizeof(double));
            tl_predict(scratch, 0, o);
        }
    }
}

int main(int argc, char **argv) {
    if (argc < 6) {
        fprintf(stderr, "usage: %s tl2cgen|lleaves LIB ROWS.f32 N_FEATURES N_OUT [--reps N] "
                        "[--single-reps N] [--out SCORES.f64]\n", argv[0]);
        return 2;
    }
    is_lleaves = strcmp(argv[1], "lleaves") == 0;
    n_features = (size_t)atol(argv[4]);
    n_out = (size_t)atol(argv[5]);
    int reps = 7, single_reps = 7;
    const char *out_path = NULL;
    for (int i = 6; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--single-reps")) single_reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--out")) out_path = argv[i + 1];
    }
    if (reps < 1) reps = 1;
#ifndef LLEAVES
    if (is_lleaves) {
        fprintf(stderr, "built without -DLLEAVES\n");
        return 2;
    }
    void *lib = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "%s\n", dlerror());
        return 1;
    }
    tl_predict = (tl2cgen_predict)dlsym(lib, "predict");
    if (!tl_predict) {
        fprintf(stderr, "no predict in %s\n", argv[2]);
        return 1;
    }
    const char *(*thr)(void) = (const char *(*)(void))dlsym(lib, "get_threshold_type");
    const char *(*leaf)(void) = (const char *(*)(void))dlsym(lib, "get_leaf_output_type");
    f32_entries = thr && !strcmp(thr(), "float32");
    f32_out = leaf && !strcmp(leaf(), "float32");
    out32 = calloc(n_out, sizeof(float));
#endif
    FILE *f = fopen(argv[3], "rb");
    if (!f) {
        perror(argv[3]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    size_t n_bytes = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    float *rows = malloc(n_bytes);
    if (fread(rows, 1, n_bytes, f) != n_bytes) {
        perror("read");
        return 1;
    }
    fclose(f);
    size_t n_rows = n_bytes / 4 / n_features;
    double *out = calloc(n_rows * n_out, sizeof(double));
    /* Batch scratch: double rows (lleaves) or one Entry array (tl2cgen); both 8 bytes a value. */
    void *scratch = malloc(n_rows * n_features * 8);

    run(rows, 0, n_rows, out, scratch); /* warm-up, and the answers the harness checks */
    if (out_path) {
        FILE *o = fopen(out_path, "wb");
        fwrite(out, sizeof(double), n_rows * n_out, o);
        fclose(o);
    }
    double *t = malloc(sizeof(double) * (size_t)(reps > single_reps ? reps : single_reps + 1));
    for (int k = 0; k < reps; k++) {
        double t0 = now_ns();
        run(rows, 0, n_rows, out, scratch);
        t[k] = now_ns() - t0;
    }
    double batch_ns = median(t, reps);
    size_t pass = n_rows < 10000 ? n_rows : 10000;
    volatile double sink = 0;
    for (int k = 0; k < single_reps; k++) {
        double t0 = now_ns();
        for (size_t r = 0; r < pass; r++) {
            run(rows, r, r + 1, out, scratch);
            sink += out[0];
        }
        t[k] = (now_ns() - t0) / (double)pass;
    }
    double single_ns = single_reps > 0 ? median(t, single_reps) : NAN;
    printf("{\"rows\":%zu,\"batch_ns\":%.0f,\"per_row_ns\":%.3f,\"single_row_ns\":", n_rows,
           batch_ns, batch_ns / (double)n_rows);
    if (isnan(single_ns))
        printf("null}\n");
    else
        printf("%.3f}\n", single_ns);
    return 0;
}
