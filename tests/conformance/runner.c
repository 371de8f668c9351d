/* Conformance runner in C, written against loom.h only: executes every case of
 * the given JSON files and prints "<name> <sha256 of the raw bytes>" per output,
 * or "<case> ERROR <message>" for a case that cannot run (the others still run).
 * Usage: loom_conformance CASES.json... > digests.txt */
#include <loom/loom.h>

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ JSON */
enum { J_NULL, J_FALSE, J_TRUE, J_NUM, J_STR, J_ARR, J_OBJ };
typedef struct J {
  int type;
  char *text; /* J_NUM: the token as written; J_STR: the decoded string */
  int n;
  struct J *items;
  char **keys;
} J;

static const char *skip(const char *p) {
  while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') ++p;
  return p;
}

static char *dup_range(const char *a, size_t n) {
  char *s = malloc(n + 1);
  memcpy(s, a, n);
  s[n] = 0;
  return s;
}

static int parse(const char **p, J *out);

static int parse_string(const char **p, char **out) {
  const char *s = *p + 1;
  size_t cap = 16, len = 0;
  char *buf = malloc(cap);
  while (*s && *s != '"') {
    char c = *s++;
    if (c == '\\') {
      c = *s++;
      switch (c) {
        case 'n': c = '\n'; break;
        case 't': c = '\t'; break;
        case 'r': c = '\r'; break;
        case 'b': c = '\b'; break;
        case 'f': c = '\f'; break;
        case 'u': {
          unsigned v = 0;
          int i;
          for (i = 0; i < 4 && *s; ++i, ++s) v = v * 16 + (unsigned)(*s <= '9' ? *s - '0' : (*s | 32) - 'a' + 10);
          c = v < 128 ? (char)v : '?';
          break;
        }
        default: break; /* \" \\ \/ */
      }
    }
    if (len + 1 >= cap) buf = realloc(buf, cap *= 2);
    buf[len++] = c;
  }
  if (*s != '"') {
    free(buf);
    return -1;
  }
  buf[len] = 0;
  *out = buf;
  *p = s + 1;
  return 0;
}

static int parse(const char **pp, J *out) {
  const char *p = skip(*pp);
  memset(out, 0, sizeof *out);
  if (*p == '{' || *p == '[') {
    int obj = *p == '{';
    out->type = obj ? J_OBJ : J_ARR;
    p = skip(p + 1);
    if (*p == (obj ? '}' : ']')) {
      *pp = p + 1;
      return 0;
    }
    for (;;) {
      J item;
      char *key = NULL;
      p = skip(p);
      if (obj) {
        if (*p != '"' || parse_string(&p, &key)) return -1;
        p = skip(p);
        if (*p++ != ':') return -1;
      }
      if (parse(&p, &item)) return -1;
      out->items = realloc(out->items, sizeof(J) * (size_t)(out->n + 1));
      out->items[out->n] = item;
      if (obj) {
        out->keys = realloc(out->keys, sizeof(char *) * (size_t)(out->n + 1));
        out->keys[out->n] = key;
      }
      out->n++;
      p = skip(p);
      if (*p == ',') {
        ++p;
        continue;
      }
      if (*p == (obj ? '}' : ']')) {
        *pp = p + 1;
        return 0;
      }
      return -1;
    }
  }
  if (*p == '"') {
    out->type = J_STR;
    if (parse_string(&p, &out->text)) return -1;
    *pp = p;
    return 0;
  }
  if (!strncmp(p, "true", 4)) { out->type = J_TRUE; *pp = p + 4; return 0; }
  if (!strncmp(p, "false", 5)) { out->type = J_FALSE; *pp = p + 5; return 0; }
  if (!strncmp(p, "null", 4)) { out->type = J_NULL; *pp = p + 4; return 0; }
  {
    const char *s = p;
    while (*p && strchr("+-0123456789.eE", *p)) ++p;
    if (p == s) return -1;
    out->type = J_NUM;
    out->text = dup_range(s, (size_t)(p - s));
    *pp = p;
    return 0;
  }
}

static void jfree(J *j) {
  int i;
  for (i = 0; i < j->n; ++i) {
    jfree(&j->items[i]);
    if (j->keys) free(j->keys[i]);
  }
  free(j->items);
  free(j->keys);
  free(j->text);
}

static const J *get(const J *o, const char *key) {
  int i;
  if (!o || o->type != J_OBJ) return NULL;
  for (i = 0; i < o->n; ++i)
    if (!strcmp(o->keys[i], key)) return &o->items[i];
  return NULL;
}

/* A parameter's text: numbers exactly as written, tuples as "(a,b)". */
static void raw(const J *v, char *buf, size_t cap) {
  if (v->type == J_TRUE) snprintf(buf, cap, "true");
  else if (v->type == J_FALSE) snprintf(buf, cap, "false");
  else if (v->type == J_ARR) {
    size_t len = 0;
    int i;
    buf[len++] = '(';
    for (i = 0; i < v->n && len < cap - 24; ++i) {
      char part[64];
      raw(&v->items[i], part, sizeof part);
      len += (size_t)snprintf(buf + len, cap - len, "%s%s", i ? "," : "", part);
    }
    snprintf(buf + len, cap - len, v->n == 1 ? ",)" : ")");
  } else snprintf(buf, cap, "%s", v->text ? v->text : "");
}

static const char *str_or(const J *o, const char *key, const char *dflt, char *buf, size_t cap) {
  const J *v = get(o, key);
  if (!v) return dflt;
  raw(v, buf, cap);
  return buf;
}

/* --------------------------------------------------------------- SHA-256 */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(uint32_t h[8], const unsigned char *b) {
  uint32_t w[64], a[8];
  int i;
  for (i = 0; i < 16; ++i)
    w[i] = (uint32_t)b[4 * i] << 24 | (uint32_t)b[4 * i + 1] << 16 | (uint32_t)b[4 * i + 2] << 8 | b[4 * i + 3];
  for (i = 16; i < 64; ++i) {
    uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
    uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
    w[i] = w[i - 16] + s0 + w[i - 7] + s1;
  }
  memcpy(a, h, sizeof a);
  for (i = 0; i < 64; ++i) {
    uint32_t t1 = a[7] + (ROR(a[4], 6) ^ ROR(a[4], 11) ^ ROR(a[4], 25)) + ((a[4] & a[5]) ^ (~a[4] & a[6])) + K[i] + w[i];
    uint32_t t2 = (ROR(a[0], 2) ^ ROR(a[0], 13) ^ ROR(a[0], 22)) + ((a[0] & a[1]) ^ (a[0] & a[2]) ^ (a[1] & a[2]));
    memmove(a + 1, a, 7 * sizeof(uint32_t));
    a[4] += t1;
    a[0] = t1 + t2;
  }
  for (i = 0; i < 8; ++i) h[i] += a[i];
}

static void sha256_hex(const unsigned char *data, size_t n, char out[65]) {
  uint32_t h[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  unsigned char tail[128];
  size_t full = n / 64 * 64, rest = n - full, tl;
  uint64_t bits = (uint64_t)n * 8;
  size_t i;
  for (i = 0; i < full; i += 64) sha_block(h, data + i);
  memset(tail, 0, sizeof tail);
  memcpy(tail, data + full, rest);
  tail[rest] = 0x80;
  tl = rest + 9 <= 64 ? 64 : 128;
  for (i = 0; i < 8; ++i) tail[tl - 1 - i] = (unsigned char)(bits >> (8 * i));
  for (i = 0; i < tl; i += 64) sha_block(h, tail + i);
  for (i = 0; i < 8; ++i) sprintf(out + 8 * i, "%08x", h[i]);
}

/* --------------------------------------------------------------- running */
static char g_error[2048];

static int fail(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_error, sizeof g_error, fmt, ap);
  va_end(ap);
  return -1;
}

#define CHECK(call)                                             \
  do {                                                          \
    if ((call) != LOOM_OK) return fail("%s", loom_last_error()); \
  } while (0)

/* Invokes `op` with string parameters; outs[i] may hold arrays to write in place. */
static int invoke(const char *op, loom_ndarray *ins, int nin, const char **keys, const char **vals, int np,
                  loom_ndarray *outs, int *nout) {
  loom_op h;
  int32_t n;
  CHECK(loom_op_find(&h, op));
  CHECK(loom_op_num_outputs(&n, h, keys, vals, np));
  if (*nout && *nout != n) return fail("%s: %d outputs expected, op has %d", op, *nout, n);
  if (!*nout) memset(outs, 0, sizeof(loom_ndarray) * (size_t)n);
  *nout = n;
  CHECK(loom_imperative_invoke(outs, n, h, ins, nin, keys, vals, np));
  return 0;
}

static int digest(loom_ndarray a, char hex[65]) {
  int64_t size;
  int32_t dt;
  size_t esz, nbytes;
  unsigned char *buf;
  CHECK(loom_ndarray_get_size(&size, a));
  CHECK(loom_ndarray_get_dtype(&dt, a));
  esz = dt == LOOM_DTYPE_FLOAT64 || dt == LOOM_DTYPE_INT64 ? 8 : dt == LOOM_DTYPE_UINT8 || dt == LOOM_DTYPE_INT8 ? 1 : dt == LOOM_DTYPE_FLOAT16 ? 2 : 4;
  nbytes = (size_t)size * esz;
  buf = malloc(nbytes ? nbytes : 1);
  if (loom_ndarray_copy_to_host(buf, nbytes, a) != LOOM_OK) {
    free(buf);
    return fail("%s", loom_last_error());
  }
  sha256_hex(buf, nbytes, hex);
  free(buf);
  return 0;
}

static const char *dtype_name(int32_t dt) {
  switch (dt) {
    case LOOM_DTYPE_FLOAT32: return "float32";
    case LOOM_DTYPE_FLOAT64: return "float64";
    case LOOM_DTYPE_INT32: return "int32";
    case LOOM_DTYPE_INT64: return "int64";
    case LOOM_DTYPE_UINT8: return "uint8";
    default: return "float32";
  }
}

/* Natively drawn input: random_uniform after loom_random_seed(seed), then casts. */
static int make_input(const J *spec, const char *shape, const char *dtype, const char *seed, loom_ndarray *out) {
  char b1[64], b2[64], b3[64], b4[64], b5[256];
  const char *keys[4] = {"shape", "low", "high", "dtype"}, *vals[4];
  const J *casts = get(spec, "cast");
  int n = 0, i;
  loom_ndarray x[1] = {NULL};
  if (!shape) {
    const J *s = get(spec, "shape");
    if (!s) return fail("input has no shape");
    raw(s, b5, sizeof b5);
    shape = b5;
  }
  CHECK(loom_random_seed((uint64_t)strtoull(seed ? seed : str_or(spec, "seed", "0", b4, sizeof b4), NULL, 10)));
  vals[0] = shape;
  vals[1] = str_or(spec, "low", "-1", b1, sizeof b1);
  vals[2] = str_or(spec, "high", "1", b2, sizeof b2);
  vals[3] = dtype ? dtype : str_or(spec, "dtype", "float32", b3, sizeof b3);
  if (invoke("random_uniform", NULL, 0, keys, vals, 4, x, &n)) return -1;
  for (i = 0; casts && i < casts->n; ++i) {
    const char *ck[1] = {"dtype"}, *cv[1];
    loom_ndarray y[1] = {NULL};
    int m = 0;
    cv[0] = casts->items[i].text;
    if (invoke("cast", x, 1, ck, cv, 1, y, &m)) {
      loom_ndarray_free(x[0]);
      return -1;
    }
    loom_ndarray_free(x[0]);
    x[0] = y[0];
  }
  *out = x[0];
  return 0;
}

static void emit(char *lines, size_t cap, const char *name, const char *suffix, const char *hex) {
  size_t len = strlen(lines);
  snprintf(lines + len, cap - len, "%s/%s %s\n", name, suffix, hex);
}

static int params_of(const J *o, const char ***keys, const char ***vals, char **store) {
  int i;
  if (!o) return 0;
  *keys = malloc(sizeof(char *) * (size_t)(o->n + 1));
  *vals = malloc(sizeof(char *) * (size_t)(o->n + 1));
  *store = malloc((size_t)(o->n + 1) * 256);
  for (i = 0; i < o->n; ++i) {
    (*keys)[i] = o->keys[i];
    raw(&o->items[i], *store + 256 * i, 256);
    (*vals)[i] = *store + 256 * i;
  }
  return o->n;
}

static int run_op(const J *c, char *lines, size_t cap) {
  const J *ins = get(c, "inputs");
  const char *name = get(c, "name")->text, *op = get(c, "op")->text;
  char b[64], hex[65], suffix[32];
  loom_ndarray inputs[16], outs[16];
  const char **keys = NULL, **vals = NULL;
  char *store = NULL;
  int nin = ins ? ins->n : 0, nout = 0, np, i, rc = 0, want;
  for (i = 0; i < nin; ++i)
    if (make_input(&ins->items[i], NULL, NULL, NULL, &inputs[i])) {
      nin = i;
      rc = -1;
      goto done;
    }
  np = params_of(get(c, "params"), &keys, &vals, &store);
  if (loom_random_seed((uint64_t)strtoull(str_or(c, "seed", "0", b, sizeof b), NULL, 10)) != LOOM_OK ||
      invoke(op, inputs, nin, keys, vals, np, outs, &nout)) {
    rc = -1;
    goto done;
  }
  want = atoi(str_or(c, "outputs", "1", b, sizeof b));
  for (i = 0; i < want && rc == 0; ++i) {
    if (i >= nout) {
      rc = fail("%s has %d outputs", op, nout);
      break;
    }
    rc = digest(outs[i], hex);
    snprintf(suffix, sizeof suffix, "out%d", i);
    if (rc == 0) emit(lines, cap, name, suffix, hex);
  }
  for (i = 0; i < nout; ++i) loom_ndarray_free(outs[i]);
done:
  for (i = 0; i < nin; ++i) loom_ndarray_free(inputs[i]);
  free(keys);
  free(vals);
  free(store);
  return rc;
}

/* A key-value store: init from one drawn value, then each push (one drawn value per
 * seed, value i on cpu(i) when "devices") followed by a pull, digested. */
static int run_kvstore(const J *c, char *lines, size_t cap) {
  const J *spec = get(c, "value"), *pushes = get(c, "pushes"), *up = get(c, "updater"), *dev = get(c, "devices");
  const char *name = get(c, "name")->text, *kvtype = get(c, "kvstore")->text;
  char kb[64], hex[65], suffix[32];
  const char *key = str_or(c, "key", "w", kb, sizeof kb);
  loom_kvstore kv = NULL;
  loom_ndarray init = NULL, out = NULL;
  int rc = 0, p, i;
  int32_t ndim = 0, dt = 0;
  int64_t shape[8];
  if (!spec || !pushes || pushes->type != J_ARR) return fail("kvstore case needs \"value\" and \"pushes\"");
  CHECK(loom_kvstore_create(&kv, kvtype));
  if (up) {
    const char **keys = NULL, **vals = NULL;
    char *store = NULL;
    int np = params_of(get(up, "params"), &keys, &vals, &store);
    if (loom_kvstore_set_updater(kv, get(up, "op")->text, np, keys, vals) != LOOM_OK) rc = fail("%s", loom_last_error());
    free(keys);
    free(vals);
    free(store);
    if (rc) goto done;
  }
  if (make_input(spec, NULL, NULL, NULL, &init)) {
    rc = -1;
    goto done;
  }
  if (loom_kvstore_init(kv, 1, &key, &init) != LOOM_OK || loom_ndarray_get_ndim(&ndim, init) != LOOM_OK ||
      loom_ndarray_get_shape(shape, 8, init) != LOOM_OK || loom_ndarray_get_dtype(&dt, init) != LOOM_OK ||
      loom_ndarray_create(&out, shape, ndim, dt, LOOM_DEVICE_CPU, 0) != LOOM_OK) {
    rc = fail("%s", loom_last_error());
    goto done;
  }
  for (p = 0; p < pushes->n && rc == 0; ++p) {
    const J *seeds = &pushes->items[p];
    loom_ndarray vals[16];
    const char *keys[16];
    int n = 0;
    for (i = 0; i < seeds->n && i < 16 && rc == 0; ++i) {
      loom_ndarray x = NULL;
      if (make_input(spec, NULL, NULL, seeds->items[i].text, &x)) {
        rc = -1;
        break;
      }
      if (dev && dev->type == J_TRUE) {
        loom_ndarray on = NULL;
        if (loom_ndarray_create(&on, shape, ndim, dt, LOOM_DEVICE_CPU, i) != LOOM_OK ||
            loom_ndarray_copy_to(on, x) != LOOM_OK)
          rc = fail("%s", loom_last_error());
        loom_ndarray_free(x);
        x = on;
      }
      vals[n] = x;
      keys[n++] = key;
    }
    if (rc == 0 && (loom_kvstore_push(kv, n, keys, vals, 0) != LOOM_OK || loom_kvstore_pull(kv, 1, &key, &out, 0) != LOOM_OK))
      rc = fail("%s", loom_last_error());
    for (i = 0; i < n; ++i) loom_ndarray_free(vals[i]);
    if (rc == 0 && (rc = digest(out, hex)) == 0) {
      snprintf(suffix, sizeof suffix, "pull%d", p);
      emit(lines, cap, name, suffix, hex);
    }
  }
done:
  if (init) loom_ndarray_free(init);
  if (out) loom_ndarray_free(out);
  loom_kvstore_free(kv);
  return rc;
}

/* The names in a JSON list returned by loom_symbol_list. */
static int list_names(loom_symbol s, int kind, J *out) {
  const char *js;
  CHECK(loom_symbol_list(&js, s, kind));
  if (parse(&js, out)) return fail("bad JSON from loom_symbol_list");
  return 0;
}

static int shape_text(loom_ndarray a, char *buf, size_t cap) {
  int64_t dims[LOOM_MAX_NDIM];
  int32_t nd, i;
  size_t len = 0;
  CHECK(loom_ndarray_get_ndim(&nd, a));
  CHECK(loom_ndarray_get_shape(dims, LOOM_MAX_NDIM, a));
  len += (size_t)snprintf(buf, cap, "(");
  for (i = 0; i < nd; ++i) len += (size_t)snprintf(buf + len, cap - len, "%s%lld", i ? "," : "", (long long)dims[i]);
  snprintf(buf + len, cap - len, nd == 1 ? ",)" : ")");
  return 0;
}

static int fill(loom_ndarray a, const J *spec, long long seed) {
  char shape[128], s[32];
  int32_t dt;
  loom_ndarray x;
  if (shape_text(a, shape, sizeof shape)) return -1;
  CHECK(loom_ndarray_get_dtype(&dt, a));
  snprintf(s, sizeof s, "%lld", seed);
  if (make_input(spec, shape, dtype_name(dt), s, &x)) return -1;
  if (loom_ndarray_copy_to(a, x) != LOOM_OK) {
    loom_ndarray_free(x);
    return fail("%s", loom_last_error());
  }
  loom_ndarray_free(x);
  return 0;
}

static int run_graph(const J *c, const char *base, char *lines, size_t cap) {
  const char *name = get(c, "name")->text;
  const J *shapes = get(c, "shapes"), *specs = get(c, "inputs"), *train = get(c, "train"), *bwd = get(c, "backward");
  char path[4096], b[64], hex[65], suffix[300];
  J args = {0}, auxs = {0}, aux_default = {0};
  const char *names[16], *adj = "{\"low\": 0.5, \"high\": 1.5}";
  int32_t ndims[16], reqs[16];
  int64_t dims[128];
  loom_symbol net = NULL;
  loom_executor ex = NULL;
  int nd = 0, i, j, rc = -1, steps;
  long long seed = atoll(str_or(c, "seed", "0", b, sizeof b));
  snprintf(path, sizeof path, "%s/%s", base, get(c, "graph")->text);
  if (loom_symbol_load(&net, path) != LOOM_OK) return fail("%s", loom_last_error());
  for (i = 0; i < shapes->n; ++i) {
    names[i] = shapes->keys[i];
    ndims[i] = shapes->items[i].n;
    reqs[i] = LOOM_GRAD_NULL;
    for (j = 0; j < shapes->items[i].n; ++j) dims[nd++] = atoll(shapes->items[i].items[j].text);
  }
  if (loom_executor_simple_bind(&ex, net, LOOM_DEVICE_CPU, 0, shapes->n, names, ndims, dims, NULL, shapes->n,
                                names, reqs, LOOM_GRAD_WRITE) != LOOM_OK) {
    fail("%s", loom_last_error());
    goto done;
  }
  if (list_names(net, LOOM_LIST_ARGUMENTS, &args) || list_names(net, LOOM_LIST_AUXILIARY_STATES, &auxs)) goto done;
  parse(&adj, &aux_default);
  for (i = 0; i < args.n; ++i) {
    loom_ndarray a;
    const J *spec = get(specs, args.items[i].text);
    if (loom_executor_get(&a, ex, LOOM_EXEC_ARGUMENT, i) != LOOM_OK) { fail("%s", loom_last_error()); goto done; }
    j = fill(a, spec, seed * 1000 + i);
    loom_ndarray_free(a);
    if (j) goto done;
  }
  for (i = 0; i < auxs.n; ++i) {
    loom_ndarray a;
    const J *spec = get(specs, auxs.items[i].text);
    if (loom_executor_get(&a, ex, LOOM_EXEC_AUXILIARY_STATE, i) != LOOM_OK) { fail("%s", loom_last_error()); goto done; }
    j = fill(a, spec ? spec : &aux_default, seed * 1000 + 500 + i);
    loom_ndarray_free(a);
    if (j) goto done;
  }
  steps = atoi(str_or(c, "steps", "0", b, sizeof b));
  if (steps == 0) {
    int32_t nout;
    if (loom_executor_forward(ex, !train || train->type == J_TRUE) != LOOM_OK) { fail("%s", loom_last_error()); goto done; }
    if ((!bwd || bwd->type == J_TRUE) && loom_executor_backward(ex, 0, NULL) != LOOM_OK) { fail("%s", loom_last_error()); goto done; }
    loom_executor_count(&nout, ex, LOOM_EXEC_OUTPUT);
    for (i = 0; i < nout; ++i) {
      loom_ndarray o;
      loom_executor_get(&o, ex, LOOM_EXEC_OUTPUT, i);
      j = digest(o, hex);
      loom_ndarray_free(o);
      if (j) goto done;
      snprintf(suffix, sizeof suffix, "out%d", i);
      emit(lines, cap, name, suffix, hex);
    }
    for (i = 0; i < args.n; ++i) {
      loom_ndarray g = NULL;
      loom_executor_get(&g, ex, LOOM_EXEC_GRADIENT, i);
      if (!g) continue;
      j = digest(g, hex);
      loom_ndarray_free(g);
      if (j) goto done;
      snprintf(suffix, sizeof suffix, "grad:%s", args.items[i].text);
      emit(lines, cap, name, suffix, hex);
    }
  } else {
    const J *opt = get(c, "optimizer");
    const char *op = get(opt, "op")->text, *djs;
    loom_op oh;
    J desc = {0};
    int nstate, has_t = 0, np, s;
    const char **keys = NULL, **vals = NULL;
    char *store = NULL, tbuf[32];
    loom_ndarray states[64][4];
    int is_param[64];
    if (loom_op_find(&oh, op) != LOOM_OK || loom_op_describe(&djs, oh) != LOOM_OK) { fail("%s", loom_last_error()); goto done; }
    parse(&djs, &desc);
    nstate = get(&desc, "inputs")->n - 2;
    for (i = 0; i < get(&desc, "params")->n; ++i)
      if (!strcmp(get(&get(&desc, "params")->items[i], "name")->text, "t")) has_t = 1;
    jfree(&desc);
    np = params_of(get(opt, "params"), &keys, &vals, &store);
    keys = realloc(keys, sizeof(char *) * (size_t)(np + 1));
    vals = realloc(vals, sizeof(char *) * (size_t)(np + 1));
    for (i = 0; i < args.n; ++i) {
      is_param[i] = get(shapes, args.items[i].text) == NULL;
      for (j = 0; j < nstate && is_param[i]; ++j) {
        loom_ndarray w;
        char shape[128];
        const char *zk[2] = {"shape", "dtype"}, *zv[2];
        int32_t dt;
        int m = 0;
        loom_executor_get(&w, ex, LOOM_EXEC_ARGUMENT, i);
        shape_text(w, shape, sizeof shape);
        loom_ndarray_get_dtype(&dt, w);
        loom_ndarray_free(w);
        zv[0] = shape;
        zv[1] = dtype_name(dt);
        states[i][j] = NULL;
        if (invoke("zeros", NULL, 0, zk, zv, 2, &states[i][j], &m)) goto done;
      }
    }
    for (s = 1; s <= steps; ++s) {
      if (loom_executor_forward(ex, 1) != LOOM_OK || loom_executor_backward(ex, 0, NULL) != LOOM_OK) {
        fail("%s", loom_last_error());
        goto done;
      }
      for (i = 0; i < args.n; ++i) {
        loom_ndarray io[8], outs[8];
        int m = 1 + nstate, k = np;
        if (!is_param[i]) continue;
        loom_executor_get(&io[0], ex, LOOM_EXEC_ARGUMENT, i);
        loom_executor_get(&io[1], ex, LOOM_EXEC_GRADIENT, i);
        for (j = 0; j < nstate; ++j) io[2 + j] = states[i][j];
        outs[0] = io[0];
        for (j = 0; j < nstate; ++j) outs[1 + j] = states[i][j];
        if (has_t) {
          snprintf(tbuf, sizeof tbuf, "%d", s);
          keys[k] = "t";
          vals[k++] = tbuf;
        }
        j = invoke(op, io, 2 + nstate, keys, vals, k, outs, &m);
        loom_ndarray_free(io[0]);
        loom_ndarray_free(io[1]);
        if (j) goto done;
      }
    }
    for (i = 0; i < args.n; ++i) {
      loom_ndarray w;
      if (!is_param[i]) continue;
      loom_executor_get(&w, ex, LOOM_EXEC_ARGUMENT, i);
      j = digest(w, hex);
      loom_ndarray_free(w);
      for (s = 0; s < nstate; ++s) loom_ndarray_free(states[i][s]);
      if (j) goto done;
      snprintf(suffix, sizeof suffix, "arg:%s", args.items[i].text);
      emit(lines, cap, name, suffix, hex);
    }
    free(keys);
    free(vals);
    free(store);
  }
  for (i = 0; i < auxs.n; ++i) {
    loom_ndarray a;
    loom_executor_get(&a, ex, LOOM_EXEC_AUXILIARY_STATE, i);
    j = digest(a, hex);
    loom_ndarray_free(a);
    if (j) goto done;
    snprintf(suffix, sizeof suffix, "aux:%s", auxs.items[i].text);
    emit(lines, cap, name, suffix, hex);
  }
  rc = 0;
done:
  jfree(&args);
  jfree(&auxs);
  jfree(&aux_default);
  loom_executor_free(ex);
  loom_symbol_free(net);
  return rc;
}

int main(int argc, char **argv) {
  int f;
  for (f = 1; f < argc; ++f) {
    FILE *fp = fopen(argv[f], "rb");
    long size;
    char *text, base[4096], *slash;
    const char *p;
    J doc;
    const J *cases;
    int i;
    if (!fp) {
      printf("%s ERROR cannot open the case file\n", argv[f]);
      continue;
    }
    fseek(fp, 0, SEEK_END);
    size = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    text = malloc((size_t)size + 1);
    text[fread(text, 1, (size_t)size, fp)] = 0;
    fclose(fp);
    snprintf(base, sizeof base, "%s", argv[f]);
    slash = strrchr(base, '/');
    if (slash) *slash = 0;
    else snprintf(base, sizeof base, ".");
    p = text;
    if (parse(&p, &doc) || !(cases = get(&doc, "cases")) || cases->type != J_ARR) {
      printf("%s ERROR malformed case file\n", argv[f]);
      free(text);
      continue;
    }
    for (i = 0; i < cases->n; ++i) {
      const J *c = &cases->items[i];
      const J *name = get(c, "name");
      static char lines[1 << 16];
      int rc;
      lines[0] = 0;
      if (!name || name->type != J_STR) rc = fail("case %d has no name", i);
      else if (get(c, "op")) rc = run_op(c, lines, sizeof lines);
      else if (get(c, "graph")) rc = run_graph(c, base, lines, sizeof lines);
      else if (get(c, "kvstore")) rc = run_kvstore(c, lines, sizeof lines);
      else rc = fail("case has neither \"op\", \"graph\" nor \"kvstore\"");
      if (rc == 0 && loom_wait_all() != LOOM_OK) rc = fail("%s", loom_last_error());
      if (rc) printf("%s ERROR %s\n", name && name->text ? name->text : "?", g_error);
      else fputs(lines, stdout);
    }
    jfree(&doc);
    free(text);
  }
  return 0;
}
