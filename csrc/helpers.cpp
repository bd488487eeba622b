// Sample-index builders for the pretraining datasets, exposed to Python as `data_tools.helpers`.
//
// Drop-in for PaddleNLP's compiled helpers (PyPI `tool_helpers` 0.1.2, after Megatron-LM's helpers.cpp): same
// functions, argument order, dtypes, random streams and therefore bit-identical outputs. Differences are in speed
// and safety only: long sentences are located once (not twice per epoch), samples are collected in one reserved
// pass (not a counting pass plus a filling pass), shuffle and GPT reads prefetch their random accesses, the GIL is
// released while building, and inputs that would make the reference read out of bounds, divide by zero or fill a
// silently discarded copy raise ValueError / TypeError.
//
//   build_mapping          ERNIE/BERT sentence-span samples            -> uint32|uint64 [N, 3]
//   build_blocks_mapping   ICT/REALM title+block samples               -> uint32|uint64 [N, 4]
//   build_sample_idx       GPT flat-token sample starts                -> int32 [N + 1, 2]
//   build_blending_indices weighted interleaving of datasets (in place)

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

// Documents holding a sentence longer than this are skipped (the reference's LONG_SENTENCE_LEN).
constexpr int32_t kLongSentenceLen = 512;

template <typename T>
using InArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

// The reference accumulates lengths in int32 and, built with Python's -fwrapv, wraps on overflow.
inline int32_t wrap_int32(int64_t value) { return static_cast<int32_t>(static_cast<uint32_t>(value)); }

// The reference seeds its shuffle with the int32 `seed + 1` (wrapping), sign-extended to 64 bits.
inline uint64_t shuffle_seed(int32_t seed) {
  return static_cast<uint64_t>(static_cast<int64_t>(wrap_int32(static_cast<int64_t>(seed) + 1)));
}

// Sentence boundaries of documents: document d holds sentences [bounds[d], bounds[d + 1]).
struct Documents {
  const int64_t* bounds;
  int64_t count;
  const int32_t* sizes;  // tokens per sentence
};

Documents check_documents(const InArray<int64_t>& docs, const InArray<int32_t>& sizes) {
  const int64_t* bounds = docs.data();
  const int64_t num_sentences = sizes.size();
  for (py::ssize_t i = 0; i < docs.size(); ++i) {
    const bool in_order = i == 0 ? bounds[0] >= 0 : bounds[i] >= bounds[i - 1];
    if (!in_order || bounds[i] > num_sentences) {
      throw std::invalid_argument("docs must be non-decreasing sentence offsets in [0, len(sizes)=" +
                                  std::to_string(num_sentences) + "]; docs[" + std::to_string(i) +
                                  "] = " + std::to_string(bounds[i]));
    }
  }
  return {bounds, std::max<int64_t>(docs.size() - 1, 0), sizes.data()};
}

// Which documents can yield samples, plus the bookkeeping the verbose log reports.
struct DocumentScan {
  std::vector<int32_t> usable;  // ids of documents with >= min_num_sent sentences and no long sentence
  int64_t usable_sentences = 0;
  double tokens_per_sentence = 0;  // mean over the documents' range
  uint64_t empty = 0, one_sentence = 0, long_sentence = 0;
};

// One pass over the sentences of the documents' range: the long ones (rare), ascending, and the token count.
struct SentenceStats {
  std::vector<int64_t> long_sentences;
  int64_t tokens = 0;
};

SentenceStats sentence_stats(const Documents& docs) {
  constexpr int64_t kBlock = 256;
  SentenceStats stats;
  if (docs.count == 0) return stats;
  const int64_t end = docs.bounds[docs.count];
  for (int64_t block = docs.bounds[0]; block < end; block += kBlock) {
    const int64_t block_end = std::min(block + kBlock, end);
    int32_t num_long = 0;  // counted branch-free (vectorised) first: most blocks have none
    for (int64_t s = block; s < block_end; ++s) {
      num_long += docs.sizes[s] > kLongSentenceLen;
      stats.tokens += docs.sizes[s];
    }
    for (int64_t s = block; num_long > 0 && s < block_end; ++s) {
      if (docs.sizes[s] > kLongSentenceLen) stats.long_sentences.push_back(s);
    }
  }
  return stats;
}

// A document with at least `long_check_from` sentences is skipped when one of them exceeds kLongSentenceLen
// (build_mapping checks from 2 sentences, build_blocks_mapping from min_num_sent).
DocumentScan scan_documents(const Documents& docs, int64_t min_num_sent, int64_t long_check_from) {
  DocumentScan scan;
  const SentenceStats stats = sentence_stats(docs);
  const std::vector<int64_t>& longs = stats.long_sentences;
  size_t next_long = 0;  // first long sentence at or after the current document (documents are in order)
  for (int64_t d = 0; d < docs.count; ++d) {
    const int64_t first = docs.bounds[d], last = docs.bounds[d + 1], num_sent = last - first;
    while (next_long < longs.size() && longs[next_long] < first) ++next_long;
    const bool has_long = num_sent >= long_check_from && next_long < longs.size() && longs[next_long] < last;
    scan.empty += num_sent == 0;
    scan.one_sentence += num_sent == 1;
    scan.long_sentence += has_long;
    if (num_sent >= min_num_sent && !has_long) {
      scan.usable.push_back(static_cast<int32_t>(d));
      scan.usable_sentences += num_sent;
    }
  }
  const int64_t num_sentences = docs.count ? docs.bounds[docs.count] - docs.bounds[0] : 0;
  scan.tokens_per_sentence = num_sentences ? static_cast<double>(stats.tokens) / num_sentences : 0.0;
  return scan;
}

// Target length of each sample: max_len, or with probability 1/short_ratio uniform in [2, max_len].
class TargetLength {
 public:
  TargetLength(int32_t seed, int32_t short_ratio, int32_t max_len)
      : rng_(static_cast<uint32_t>(seed)), short_ratio_(short_ratio), max_len_(max_len) {}

  int32_t next() {
    if (short_ratio_ == 0) return max_len_;
    const auto r = static_cast<uint32_t>(rng_());  // mt19937 draws are 32-bit: 32-bit modulo gives the same values
    if (r % static_cast<uint32_t>(short_ratio_) != 0) return max_len_;
    return static_cast<int32_t>(2 + r % static_cast<uint32_t>(max_len_ - 1));
  }

 private:
  std::mt19937 rng_;
  int32_t short_ratio_, max_len_;
};

// Fisher-Yates over rows with the reference's 64-bit stream: row i swaps with rng() % (i + 1), i from the end.
// The partners of a batch of rows are drawn first and prefetched, so that the random reads overlap.
template <typename Row>
void shuffle_rows(std::vector<Row>& rows, int32_t seed) {
  constexpr int64_t kBatch = 64;
  std::mt19937_64 rng(shuffle_seed(seed));
  std::array<int64_t, kBatch> partner;
  for (int64_t top = static_cast<int64_t>(rows.size()) - 1; top > 0; top -= kBatch) {
    const int64_t batch = std::min(kBatch, top);  // rows top, top - 1, ..., top - batch + 1 >= 1
    for (int64_t b = 0; b < batch; ++b) {
      partner[b] = static_cast<int64_t>(rng() % static_cast<uint64_t>(top - b + 1));
      __builtin_prefetch(&rows[partner[b]], 1);
    }
    for (int64_t b = 0; b < batch; ++b) std::swap(rows[top - b], rows[partner[b]]);
  }
}

// Hands the rows to numpy without copying: the array owns the vector.
template <typename Row>
py::array rows_to_numpy(std::vector<Row>&& rows) {
  using Value = typename Row::value_type;
  constexpr py::ssize_t width = std::tuple_size<Row>::value;
  static_assert(sizeof(Row) == width * sizeof(Value), "rows must be packed");
  auto* owned = new std::vector<Row>(std::move(rows));
  py::capsule free_rows(owned, [](void* p) { delete static_cast<std::vector<Row>*>(p); });
  return py::array_t<Value>({static_cast<py::ssize_t>(owned->size()), width},
                            reinterpret_cast<const Value*>(owned->data()), free_rows);
}

// Stops at the start of an epoch once max_num_samples are collected (epochs are never cut short).
bool reached_sample_limit(uint64_t num_samples, uint64_t max_num_samples, int32_t epoch, bool verbose) {
  if (num_samples < max_num_samples) return false;
  if (verbose) {
    std::cout << "    reached " << max_num_samples << " samples after " << epoch << " epochs ..." << std::endl;
  }
  return true;
}

void log_scan(const DocumentScan& scan, uint64_t num_samples) {
  std::cout << "   number of empty documents: " << scan.empty << std::endl
            << "   number of documents with one sentence: " << scan.one_sentence << std::endl
            << "   number of documents with long sentences: " << scan.long_sentence << std::endl
            << "   will create mapping for " << num_samples << " samples" << std::endl;
}

void log_documents(const InArray<int64_t>& docs, const Documents& d) {
  const int64_t first = d.count > 0 ? d.bounds[0] : 0, last = d.count > 0 ? d.bounds[d.count] : 0;
  std::cout << "    using:" << std::endl
            << "     number of documents:            " << docs.shape(0) - 1 << std::endl
            << "     sentences range:                [" << first << ", " << last << ")" << std::endl
            << "     total number of sentences:      " << last - first << std::endl;
}

// ---------------------------------------------------------------------------------------------------------------
// build_mapping

struct MappingOptions {
  int32_t num_epochs;
  uint64_t max_num_samples;
  int32_t max_seq_length;
  int32_t seed;
  bool verbose;
  int32_t min_num_sent;
};

int32_t short_seq_ratio(double short_seq_prob) {
  if (!(short_seq_prob >= 0.0 && short_seq_prob <= 1.0)) {
    throw std::invalid_argument("short_seq_prob must be in [0, 1], got " + std::to_string(short_seq_prob));
  }
  if (short_seq_prob == 0.0) return 0;
  const double ratio = std::round(1.0 / short_seq_prob);
  if (ratio > std::numeric_limits<int32_t>::max()) {
    throw std::invalid_argument("short_seq_prob is too small: " + std::to_string(short_seq_prob));
  }
  return static_cast<int32_t>(ratio);
}

// A generous guess of the number of spans, to reserve once instead of growing (untouched capacity costs no
// memory): per epoch one span per mean target length of tokens plus one per document, at most one per sentence;
// whole epochs until max_num_samples.
size_t expected_spans(const DocumentScan& scan, const MappingOptions& o, int32_t short_ratio) {
  const double short_share = short_ratio ? 1.0 / short_ratio : 0.0;
  const double mean_target = (1.0 - short_share) * o.max_seq_length + short_share * (o.max_seq_length + 2) / 2.0;
  const double tokens = scan.usable_sentences * scan.tokens_per_sentence;
  const double per_epoch = std::clamp(tokens / mean_target + scan.usable.size(), 0.0,
                                      static_cast<double>(scan.usable_sentences));
  const double epochs = std::min(std::ceil(static_cast<double>(o.max_num_samples) / std::max(per_epoch, 1.0)),
                                 static_cast<double>(std::max(o.num_epochs, 0)));
  return static_cast<size_t>(epochs * per_epoch);
}

// Splits every usable document, epoch after epoch, into spans of whole sentences: a span closes once it reaches
// its target length with at least min_num_sent sentences and more than one sentence left, or at the document end.
// Row = (first sentence, end sentence, target length).
template <typename Index>
std::vector<std::array<Index, 3>> sentence_spans(const Documents& docs, const DocumentScan& scan,
                                                 const MappingOptions& o, int32_t short_ratio) {
  std::vector<std::array<Index, 3>> rows;
  rows.reserve(expected_spans(scan, o, short_ratio));
  TargetLength target_length(o.seed, short_ratio, o.max_seq_length);
  for (int32_t epoch = 0; epoch < o.num_epochs; ++epoch) {
    if (reached_sample_limit(rows.size(), o.max_num_samples, epoch, o.verbose)) break;
    if (epoch > 0 && rows.empty()) {
      throw std::invalid_argument("no document has at least min_num_sent=" + std::to_string(o.min_num_sent) +
                                  " sentences (and none longer than 512 tokens): cannot build samples");
    }
    for (const int32_t d : scan.usable) {
      int64_t start = docs.bounds[d];
      const int64_t last = docs.bounds[d + 1];
      int32_t target = target_length.next(), seq_len = 0;
      int64_t num_sent = 0;
      for (int64_t s = start; s < last; ++s) {
        seq_len = wrap_int32(static_cast<int64_t>(seq_len) + docs.sizes[s]);
        ++num_sent;
        const int64_t remaining = last - s - 1;
        if ((seq_len >= target && remaining > 1 && num_sent >= o.min_num_sent) || remaining == 0) {
          rows.push_back({static_cast<Index>(start), static_cast<Index>(s + 1), static_cast<Index>(target)});
          start = s + 1;
          target = target_length.next();
          seq_len = 0;
          num_sent = 0;
        }
      }
    }
  }
  return rows;
}

template <typename Index>
py::array build_mapping_as(const Documents& docs, const MappingOptions& o, int32_t short_ratio) {
  std::vector<std::array<Index, 3>> rows;
  {
    py::gil_scoped_release nogil;
    const DocumentScan scan = scan_documents(docs, o.min_num_sent, 2);
    rows = sentence_spans<Index>(docs, scan, o, short_ratio);
    if (o.verbose) log_scan(scan, rows.size());
    shuffle_rows(rows, o.seed);
  }
  return rows_to_numpy(std::move(rows));
}

py::array build_mapping(const InArray<int64_t>& docs_, const InArray<int32_t>& sizes_, int32_t num_epochs,
                        uint64_t max_num_samples, int32_t max_seq_length, double short_seq_prob, int32_t seed,
                        bool verbose, int32_t min_num_sent) {
  if (max_seq_length < 2) throw std::invalid_argument("max_seq_length must be > 1");
  const Documents docs = check_documents(docs_, sizes_);
  const int32_t short_ratio = short_seq_ratio(short_seq_prob);
  const MappingOptions o{num_epochs, max_num_samples, max_seq_length, seed, verbose, min_num_sent};
  const bool wide = static_cast<uint64_t>(sizes_.size()) > std::numeric_limits<uint32_t>::max();
  if (verbose) {
    std::cout << "    using " << (wide ? "uint64" : "uint32") << " for data mapping..." << std::endl;
    log_documents(docs_, docs);
    std::cout << "     number of epochs:               " << num_epochs << std::endl
              << "     maximum number of samples:      " << max_num_samples << std::endl
              << "     maximum sequence length:        " << max_seq_length << std::endl
              << "     minimum sentences num:          " << min_num_sent << std::endl
              << "     short sequence probability:     " << short_seq_prob << std::endl
              << "     short sequence ration (1/prob): " << short_ratio << std::endl
              << "     seed:                           " << seed << std::endl;
  }
  return wide ? build_mapping_as<uint64_t>(docs, o, short_ratio) : build_mapping_as<uint32_t>(docs, o, short_ratio);
}

// ---------------------------------------------------------------------------------------------------------------
// build_blocks_mapping

// Like sentence_spans with a per-document target (max_seq_length minus the title) and at least min_num_sent
// sentences left after a cut. Row = (first sentence, end sentence, document, block id within the epoch).
template <typename Index>
std::vector<std::array<Index, 4>> title_blocks(const Documents& docs, const int32_t* title_sizes,
                                               const DocumentScan& scan, int32_t num_epochs,
                                               uint64_t max_num_samples, int32_t max_seq_length, bool verbose,
                                               int32_t min_num_sent) {
  std::vector<std::array<Index, 4>> rows;
  for (int32_t epoch = 0; epoch < num_epochs; ++epoch) {
    if (reached_sample_limit(rows.size(), max_num_samples, epoch, verbose)) break;
    int32_t block_id = 0;
    for (const int32_t d : scan.usable) {
      int64_t start = docs.bounds[d];
      const int64_t last = docs.bounds[d + 1];
      const int32_t target = wrap_int32(static_cast<int64_t>(max_seq_length) - title_sizes[d]);
      int32_t seq_len = 0;
      int64_t num_sent = 0;
      for (int64_t s = start; s < last; ++s) {
        seq_len = wrap_int32(static_cast<int64_t>(seq_len) + docs.sizes[s]);
        ++num_sent;
        const int64_t remaining = last - s - 1;
        if ((seq_len >= target && remaining >= min_num_sent && num_sent >= min_num_sent) || remaining == 0) {
          rows.push_back({static_cast<Index>(start), static_cast<Index>(s + 1), static_cast<Index>(d),
                          static_cast<Index>(block_id)});
          ++block_id;
          start = s + 1;
          seq_len = 0;
          num_sent = 0;
        }
      }
    }
  }
  return rows;
}

template <typename Index>
py::array build_blocks_mapping_as(const Documents& docs, const int32_t* title_sizes, int32_t num_epochs,
                                  uint64_t max_num_samples, int32_t max_seq_length, int32_t seed, bool verbose,
                                  int32_t min_num_sent) {
  std::vector<std::array<Index, 4>> rows;
  {
    py::gil_scoped_release nogil;
    const DocumentScan scan = scan_documents(docs, min_num_sent, min_num_sent);
    rows = title_blocks<Index>(docs, title_sizes, scan, num_epochs, max_num_samples, max_seq_length, verbose,
                               min_num_sent);
    if (verbose) log_scan(scan, rows.size());
    shuffle_rows(rows, seed);
  }
  return rows_to_numpy(std::move(rows));
}

py::array build_blocks_mapping(const InArray<int64_t>& docs_, const InArray<int32_t>& sizes_,
                               const InArray<int32_t>& titles_sizes_, int32_t num_epochs, uint64_t max_num_samples,
                               int32_t max_seq_length, int32_t seed, bool verbose, bool use_one_sent_blocks) {
  const Documents docs = check_documents(docs_, sizes_);
  if (titles_sizes_.size() < docs.count) {
    throw std::invalid_argument("titles_sizes has " + std::to_string(titles_sizes_.size()) + " entries for " +
                                std::to_string(docs.count) + " documents");
  }
  const int32_t min_num_sent = use_one_sent_blocks ? 1 : 2;
  const bool wide = static_cast<uint64_t>(sizes_.size()) > std::numeric_limits<uint32_t>::max();
  if (verbose) {
    std::cout << "    using " << (wide ? "uint64" : "uint32") << " for data mapping..." << std::endl;
    log_documents(docs_, docs);
    std::cout << "     number of epochs:               " << num_epochs << std::endl
              << "     maximum number of samples:      " << max_num_samples << std::endl
              << "     maximum sequence length:        " << max_seq_length << std::endl
              << "     seed:                           " << seed << std::endl;
  }
  const int32_t* titles = titles_sizes_.data();
  return wide ? build_blocks_mapping_as<uint64_t>(docs, titles, num_epochs, max_num_samples, max_seq_length, seed,
                                                  verbose, min_num_sent)
              : build_blocks_mapping_as<uint32_t>(docs, titles, num_epochs, max_num_samples, max_seq_length, seed,
                                                  verbose, min_num_sent);
}

// ---------------------------------------------------------------------------------------------------------------
// build_sample_idx

// GPT samples over the documents of doc_idx laid end to end: row k = (position in doc_idx, token offset) where
// sample k starts; consecutive samples overlap by one token (the shifted label), hence seq_length + 1 per sample.
std::vector<std::array<int32_t, 2>> gpt_sample_starts(const InArray<int32_t>& sizes_, const InArray<int32_t>& doc_idx_,
                                                      int32_t seq_length, int64_t num_samples) {
  const int32_t* sizes = sizes_.data();
  const int32_t* doc_idx = doc_idx_.data();
  const int64_t num_docs = sizes_.size(), doc_idx_len = doc_idx_.size();
  constexpr int64_t kPrefetchAhead = 16;
  std::vector<std::array<int32_t, 2>> rows(static_cast<size_t>(num_samples) + 1);
  int64_t doc_pos = 0;
  int32_t doc_offset = 0;
  rows[0] = {0, 0};
  for (int64_t k = 1; k <= num_samples; ++k) {
    int32_t remaining = seq_length + 1;
    while (remaining != 0) {
      if (doc_pos >= doc_idx_len) {
        throw std::invalid_argument("doc_idx holds fewer tokens than num_epochs * tokens_per_epoch");
      }
      const int32_t doc = doc_idx[doc_pos];
      if (doc < 0 || doc >= num_docs) {
        throw std::invalid_argument("doc_idx[" + std::to_string(doc_pos) + "] = " + std::to_string(doc) +
                                    " is not a document of sizes (" + std::to_string(num_docs) + ")");
      }
      const int32_t doc_length = sizes[doc] - doc_offset;
      remaining -= doc_length;
      if (remaining <= 0) {
        doc_offset += remaining + doc_length - 1;
        remaining = 0;
      } else {
        ++doc_pos;
        doc_offset = 0;
        // doc_idx is usually a permutation: fetch the length of a document a few steps ahead.
        if (doc_pos + kPrefetchAhead < doc_idx_len) __builtin_prefetch(&sizes[doc_idx[doc_pos + kPrefetchAhead]]);
      }
    }
    rows[k] = {static_cast<int32_t>(doc_pos), doc_offset};
  }
  return rows;
}

py::array build_sample_idx(const InArray<int32_t>& sizes_, const InArray<int32_t>& doc_idx_, int32_t seq_length,
                           int32_t num_epochs, int64_t tokens_per_epoch) {
  if (seq_length < 1 || num_epochs < 1) throw std::invalid_argument("seq_length and num_epochs must be > 0");
  const int64_t num_samples = (static_cast<int64_t>(num_epochs) * tokens_per_epoch - 1) / seq_length;
  if (num_samples < 0) throw std::invalid_argument("num_epochs * tokens_per_epoch must be >= 0");
  std::cout << "    using:" << std::endl
            << "     number of documents:       " << doc_idx_.shape(0) / num_epochs << std::endl
            << "     number of epochs:          " << num_epochs << std::endl
            << "     sequence length:           " << seq_length << std::endl
            << "     total number of samples:   " << num_samples << std::endl;
  std::vector<std::array<int32_t, 2>> rows;
  {
    py::gil_scoped_release nogil;
    rows = gpt_sample_starts(sizes_, doc_idx_, seq_length, num_samples);
  }
  return rows_to_numpy(std::move(rows));
}

// ---------------------------------------------------------------------------------------------------------------
// build_blending_indices

// Sample k goes to the dataset furthest behind its share (weight * max(k, 1) - samples so far; first on ties).
template <typename DatasetId>
void blend(py::array& dataset_index_, py::array& dataset_sample_index_, const InArray<double>& weights_,
           int32_t num_datasets, int64_t size, bool verbose) {
  if (num_datasets > static_cast<int64_t>(std::numeric_limits<DatasetId>::max()) + 1) {
    throw std::invalid_argument("dataset_index's dtype cannot hold " + std::to_string(num_datasets) + " datasets");
  }
  auto dataset_index = dataset_index_.mutable_unchecked<DatasetId, 1>();
  auto sample_index = dataset_sample_index_.mutable_unchecked<int64_t, 1>();
  const double* weights = weights_.data();
  std::vector<double> taken(num_datasets, 0.0);  // samples so far; doubles are exact up to 2**53
  py::gil_scoped_release nogil;
  if (verbose) std::cout << "> building indices for blendable datasets ..." << std::endl;
  for (int64_t k = 0; k < size; ++k) {
    const double progress = std::max(static_cast<double>(k), 1.0);
    int32_t best = 0;
    double best_error = weights[0] * progress - taken[0];
    for (int32_t d = 1; d < num_datasets; ++d) {
      const double error = weights[d] * progress - taken[d];
      const bool behind_more = error > best_error;  // branch-free: which dataset wins is hard to predict
      best_error = behind_more ? error : best_error;
      best = behind_more ? d : best;
    }
    dataset_index(k) = static_cast<DatasetId>(best);
    sample_index(k) = static_cast<int64_t>(taken[best]);
    taken[best] += 1.0;
  }
  if (verbose) {
    std::cout << " > sample ratios:" << std::endl;
    for (int32_t d = 0; d < num_datasets; ++d) {
      std::cout << "   dataset " << d << ", input: " << weights[d]
                << ", achieved: " << taken[d] / static_cast<double>(size) << std::endl;
    }
  }
}

void build_blending_indices(py::array dataset_index, py::array dataset_sample_index,
                            const InArray<double>& weights, int32_t num_datasets, int64_t size, bool verbose) {
  if (num_datasets < 1 || weights.size() < num_datasets) {
    throw std::invalid_argument("need 1 <= num_datasets <= len(weights)");
  }
  if (dataset_index.ndim() != 1 || dataset_sample_index.ndim() != 1 || dataset_index.shape(0) < size ||
      dataset_sample_index.shape(0) < size) {
    throw std::invalid_argument("dataset_index and dataset_sample_index must be 1-D with >= size entries");
  }
  if (!py::isinstance<py::array_t<int64_t>>(dataset_sample_index)) {
    throw py::type_error("dataset_sample_index must be an int64 array");
  }
  if (py::isinstance<py::array_t<uint8_t>>(dataset_index)) {
    blend<uint8_t>(dataset_index, dataset_sample_index, weights, num_datasets, size, verbose);
  } else if (py::isinstance<py::array_t<int16_t>>(dataset_index)) {
    blend<int16_t>(dataset_index, dataset_sample_index, weights, num_datasets, size, verbose);
  } else {
    throw py::type_error("dataset_index must be a uint8 or int16 array");
  }
}

}  // namespace

PYBIND11_MODULE(helpers, m) {
  m.doc() = "Sample-index builders for pretraining datasets (bit-identical to tool_helpers 0.1.2).";
  m.def("build_mapping", &build_mapping, py::arg("docs"), py::arg("sizes"), py::arg("num_epochs"),
        py::arg("max_num_samples"), py::arg("max_seq_length"), py::arg("short_seq_prob"), py::arg("seed"),
        py::arg("verbose"), py::arg("min_num_sent"),
        "Sentence-span samples (start sentence, end sentence, target length), shuffled: uint32 [N, 3] "
        "(uint64 beyond 2**32 sentences). docs: int64 [D + 1] sentence offsets; sizes: int32 tokens per sentence.");
  m.def("build_blocks_mapping", &build_blocks_mapping, py::arg("docs"), py::arg("sizes"), py::arg("titles_sizes"),
        py::arg("num_epochs"), py::arg("max_num_samples"), py::arg("max_seq_length"), py::arg("seed"),
        py::arg("verbose"), py::arg("use_one_sent_blocks"),
        "Blocks (start sentence, end sentence, document, block id), shuffled: uint32 [N, 4] (uint64 beyond 2**32 "
        "sentences); each block fits max_seq_length minus its document's title.");
  m.def("build_sample_idx", &build_sample_idx, py::arg("sizes"), py::arg("doc_idx"), py::arg("seq_length"),
        py::arg("num_epochs"), py::arg("tokens_per_epoch"),
        "GPT sample starts (index into doc_idx, token offset): int32 [N + 1, 2], "
        "N = (num_epochs * tokens_per_epoch - 1) // seq_length.");
  m.def("build_blending_indices", &build_blending_indices, py::arg("dataset_index"),
        py::arg("dataset_sample_index"), py::arg("weights"), py::arg("num_datasets"), py::arg("size"),
        py::arg("verbose"),
        "Fills dataset_index (uint8 or int16 [size]) and dataset_sample_index (int64 [size]) in place so that "
        "every prefix follows the weights as closely as possible.");
}
