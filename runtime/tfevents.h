/* tfevents.h - TensorBoard event files, written and read without TensorFlow: TFRecord
 * framing (uint64 length, masked CRC32C of the length, the data, masked CRC32C of the data;
 * little-endian) around hand-encoded protobuf Events (tensorboard/compat/proto/event.proto,
 * summary.proto, histogram.proto):
 *   Event          { double wall_time = 1; int64 step = 2; string file_version = 3;
 *                    Summary summary = 5; }
 *   Summary        { repeated Value value = 1; }
 *   Value          { string tag = 1; float simple_value = 2; HistogramProto histo = 5; }
 *   HistogramProto { double min = 1, max = 2, num = 3, sum = 4, sum_squares = 5;
 *                    repeated double bucket_limit = 6 [packed]; repeated double bucket = 7; }
 * encoded as protobuf's proto3 serializer does (fields in number order, zero scalars left out,
 * the oneof members simple_value and histo always written), so that an event is byte for
 * byte what TensorBoard's own writer produces for it. One Value per Event, as TensorBoard's
 * SummaryWriter does.
 *
 * A file starts with the Event {file_version: "brain.Event:2"}. A directory of such files is
 * a TensorBoard run: TensorBoard shows the union of its files' events, so a program that
 * redoes steps (a resumed training) rebuilds the directory with tfevents_collect and
 * tfevents_open instead of adding a file. */
#ifndef MMRM_TFEVENTS_H
#define MMRM_TFEVENTS_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/strbuf.h"

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of n bytes; crc32c("123456789") is
 * 0xE3069283 */
uint32_t crc32c(const void *p, size_t n);
/* TFRecord's masked form: ((crc >> 15) | (crc << 17)) + 0xa282ead8 */
uint32_t tfrecord_masked_crc(const void *p, size_t n);
/* one TFRecord around n bytes of data, appended to out */
void tfrecord_frame(StrBuf *out, const void *data, size_t n);

/* a histogram as TensorBoard stores it: bucket i counts the values in
 * (bucket_limit[i-1], bucket_limit[i]]; TensorBoard draws the first from min and the last
 * up to max */
typedef struct TfHistogram {
    double min, max, num, sum, sum_squares;
    int n;                      /* buckets */
    const double *bucket_limit; /* (n,) right edges, ascending */
    const double *bucket;       /* (n,) counts */
} TfHistogram;

/* Statistics and nb equal-width buckets of x (n values, all finite) into h, with limit and
 * count (nb each) as its arrays: numpy.histogram(x, nb)'s bins (edges min + i*(max-min)/nb,
 * the last one max; a value on an inner edge goes to the bucket it opens, max to the last;
 * max == min widens the range to [min - 0.5, max + 0.5] as numpy does), the right edges
 * as bucket_limit. n = 0 gives an empty histogram (num 0, no buckets). */
void tf_histogram_fill(TfHistogram *h, const double *x, size_t n, int nb, double *limit, double *count);

/* the encoded Event (no framing) appended to out */
void tf_event_file_version(StrBuf *out, double wall_time, const char *version);
void tf_event_scalar(StrBuf *out, double wall_time, int64_t step, const char *tag, float value);
void tf_event_histogram(StrBuf *out, double wall_time, int64_t step, const char *tag, const TfHistogram *h);

/* what tfevents_parse finds in an encoded Event */
typedef struct TfEventInfo {
    double wall_time;
    int64_t step;
    int has_summary;            /* a Summary with at least one Value */
    char tag[256];              /* its first Value's tag (cut at 255 bytes) */
} TfEventInfo;
/* 0, or -1 when the bytes are not a well-formed Event */
int tf_event_parse(const void *data, size_t n, TfEventInfo *info);

/* The histogram in an encoded Event's first Value: its statistics into h and up to cap
 * buckets into limit and count (h->bucket_limit and h->bucket point at them; h->n their
 * number). 1 when the Value holds a histogram, 0 when it does not (a scalar, the file
 * version), -1 when the bytes are malformed or hold more than cap buckets. */
int tf_event_histogram_parse(const void *data, size_t n, TfHistogram *h, double *limit, double *count, int cap);

/* Calls fn for each record of the event file at path, in order, while fn returns 0. Reading
 * stops quietly at the first record that is incomplete or fails its CRCs (the tail a killed
 * writer leaves); *torn (when not NULL) tells whether that happened. The number of records
 * read, or -1 with mmrm_last_error() when the file cannot be read. */
typedef int (*TfRecordFn)(void *ctx, const void *data, size_t n);
long tfevents_read(const char *path, TfRecordFn fn, void *ctx, int *torn);

/* Events of a run directory, each encoded (unframed) with its step and tag. */
typedef struct TfEventList {
    struct TfListed {
        int64_t step;
        char *tag;
        char *data;
        size_t n;
    } *ev;
    long count, cap;
    long *slot;   /* open-addressing index of (tag, step) -> ev position + 1; 0: empty */
    long nslot;   /* a power of two, at least twice count */
} TfEventList;
/* adds an encoded summary Event (one Value), unless an event of the same tag and step is
 * already listed; returns 1 if added, 0 if it was a duplicate, -1 if not a summary Event */
int tf_list_add(TfEventList *l, const void *data, size_t n);
int tf_list_has(const TfEventList *l, const char *tag, int64_t step);
void tf_list_free(TfEventList *l);
/* the summary events of every event file in dir ("events.out.tfevents.*", oldest name first)
 * with step <= max_step, once per tag and step (the first found), added to l. A missing dir
 * adds nothing. 0, or -1 with mmrm_last_error() naming the file that could not be read. */
int tfevents_collect(const char *dir, int64_t max_step, TfEventList *l);

typedef struct TfEventWriter TfEventWriter;
/* Starts the event file dir/events.out.tfevents.<unix time>.<hostname>.<pid>.0 (TensorBoard's
 * name; dir is created): the file_version event, then prefix's events (may be NULL) sorted
 * by step, written atomically (temporary file, fsync, rename); then every other event file
 * of dir is removed, so that dir shows exactly this file. NULL with mmrm_last_error()
 * naming the file. Events added later are appended. */
TfEventWriter *tfevents_open(const char *dir, double wall_time, const TfEventList *prefix);
const char *tfevents_path(const TfEventWriter *w);
int tfevents_scalar(TfEventWriter *w, double wall_time, int64_t step, const char *tag, float value);
int tfevents_histogram(TfEventWriter *w, double wall_time, int64_t step, const char *tag,
                       const TfHistogram *h);
/* buffered events to the file; 0, or -1 with mmrm_last_error() naming it (the writes above
 * report errors the same way) */
int tfevents_flush(TfEventWriter *w);
void tfevents_close(TfEventWriter *w);

/* the wall clock in seconds since the epoch (Event.wall_time) */
double tf_wall_time(void);

#endif
