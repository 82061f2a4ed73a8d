/* nccl_emu.c - the NCCL subset of include/nccl.h over MPI, for the emulated build: each rank
 * is its own process with its own emulated GPU (EMU_DEVICES), and "device" buffers are this
 * process's memory, so a collective is the MPI collective on them. Every buffer must lie in
 * an emulated device allocation and every stream must exist, as with NCCL; work runs when it
 * is issued (the emulator has no concurrency), so this checks the call sequence, the
 * arguments and the results, not the overlap. Float sums are MPI's (ranks agree: MPI_Allreduce
 * hands every rank the same result); ncclAvg divides the sum by the rank count. */
#include <mpi.h>
#include <nccl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int cuda_emu_device_range(const void *p, size_t bytes, char *why, size_t why_len);
int cuda_emu_stream_ok(cudaStream_t s);

struct ncclComm {
    MPI_Comm mpi;
    int rank, nranks;
};

static const char MAGIC[] = "mmrm-nccl-emu";
static char g_last[512];

static ncclResult_t fail(ncclResult_t rc, const char *fmt, const char *a, const char *b) {
    snprintf(g_last, sizeof g_last, fmt, a, b);
    return rc;
}

const char *ncclGetErrorString(ncclResult_t r) {
    switch (r) {
    case ncclSuccess: return "no error";
    case ncclInvalidArgument: return "invalid argument (run with NCCL_DEBUG=WARN for details)";
    case ncclInvalidUsage: return "invalid usage (run with NCCL_DEBUG=WARN for details)";
    case ncclSystemError: return "unhandled system error";
    default: return "internal error";
    }
}

const char *ncclGetLastError(ncclComm_t comm) {
    (void)comm;
    return g_last;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
    memset(id, 0, sizeof *id);
    snprintf(id->internal, sizeof id->internal, "%s %d", MAGIC, (int)getpid());
    return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
    if (strncmp(id.internal, MAGIC, sizeof MAGIC - 1))
        return fail(ncclInvalidArgument, "ncclCommInitRank: the unique id is not one from "
                                         "ncclGetUniqueId%s%s", "", "");
    int init = 0, world = 0, me = 0;
    MPI_Initialized(&init);
    if (!init && nranks == 1 && rank == 0) { /* one process without MPI: collectives are copies */
        struct ncclComm *c = calloc(1, sizeof *c);
        if (!c) return ncclSystemError;
        c->mpi = MPI_COMM_NULL;
        c->nranks = 1;
        *comm = c;
        return ncclSuccess;
    }
    if (!init) return fail(ncclInvalidUsage, "ncclCommInitRank: several ranks need MPI%s%s", "", "");
    MPI_Comm_size(MPI_COMM_WORLD, &world);
    MPI_Comm_rank(MPI_COMM_WORLD, &me);
    if (nranks != world || rank != me) {
        char a[64], b[64];
        snprintf(a, sizeof a, "%d/%d", rank, nranks);
        snprintf(b, sizeof b, "%d/%d", me, world);
        return fail(ncclInvalidArgument, "ncclCommInitRank: rank %s but MPI has %s", a, b);
    }
    struct ncclComm *c = calloc(1, sizeof *c);
    if (!c) return ncclSystemError;
    MPI_Comm_dup(MPI_COMM_WORLD, &c->mpi);
    c->rank = rank;
    c->nranks = nranks;
    *comm = c;
    return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
    if (!comm) return fail(ncclInvalidArgument, "ncclCommDestroy: NULL communicator%s%s", "", "");
    int fin = 0;
    MPI_Finalized(&fin);
    if (!fin && comm->mpi != MPI_COMM_NULL) MPI_Comm_free(&comm->mpi);
    free(comm);
    return ncclSuccess;
}

static size_t type_size(ncclDataType_t t, MPI_Datatype *mt) {
    switch (t) {
    case ncclFloat: *mt = MPI_FLOAT; return 4;
    case ncclChar: *mt = MPI_BYTE; return 1;
    case ncclDouble: *mt = MPI_DOUBLE; return 8;
    case ncclInt: *mt = MPI_INT; return 4;
    default: *mt = MPI_DATATYPE_NULL; return 0;
    }
}

/* the checks NCCL makes before it queues anything */
static ncclResult_t check(const char *what, ncclComm_t comm, const void *buf, size_t bytes,
                          cudaStream_t stream) {
    char why[320];
    if (!comm) return fail(ncclInvalidArgument, "%s: NULL communicator%s", what, "");
    if (!cuda_emu_stream_ok(stream)) return fail(ncclInvalidArgument, "%s: unknown stream%s", what, "");
    if (bytes && !cuda_emu_device_range(buf, bytes, why, sizeof why))
        return fail(ncclInvalidArgument, "%s: %s", what, why);
    return ncclSuccess;
}

#define CHECK(x)                                \
    do {                                        \
        ncclResult_t rc_ = (x);                 \
        if (rc_ != ncclSuccess) return rc_;     \
    } while (0)

/* the reductions mmrm uses: float sums and averages, double sums (all-reduce only) */
static ncclResult_t float_sum(const char *what, ncclDataType_t dt, ncclRedOp_t op) {
    if (dt == ncclFloat && (op == ncclSum || op == ncclAvg)) return ncclSuccess;
    if (dt == ncclDouble && op == ncclSum && strcmp(what, "ncclAllReduce") == 0) return ncclSuccess;
    return fail(ncclInvalidArgument, "%s: only float sum/avg (and double sums in ncclAllReduce) are emulated%s", what, "");
}

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t dt,
                           ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    MPI_Datatype mt;
    size_t es = type_size(dt, &mt);
    CHECK(float_sum("ncclAllReduce", dt, op));
    CHECK(check("ncclAllReduce send", comm, send, count * es, stream));
    CHECK(check("ncclAllReduce recv", comm, recv, count * es, stream));
    if (send != recv) memcpy(recv, send, count * es);
    float *r = recv;
    for (size_t off = 0; off < count && comm->nranks > 1;) {
        int n = count - off > (1u << 30) ? 1 << 30 : (int)(count - off);
        MPI_Allreduce(MPI_IN_PLACE, (char *)recv + off * es, n, mt, MPI_SUM, comm->mpi);
        off += (size_t)n;
    }
    if (op == ncclAvg)
        for (size_t i = 0; i < count; i++) r[i] /= (float)comm->nranks;
    return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t dt,
                           int root, ncclComm_t comm, cudaStream_t stream) {
    MPI_Datatype mt;
    size_t es = type_size(dt, &mt);
    if (!es) return fail(ncclInvalidArgument, "ncclBroadcast: data type not emulated%s%s", "", "");
    if (comm && (root < 0 || root >= comm->nranks))
        return fail(ncclInvalidArgument, "ncclBroadcast: bad root%s%s", "", "");
    if (comm && comm->rank == root) CHECK(check("ncclBroadcast send", comm, send, count * es, stream));
    CHECK(check("ncclBroadcast recv", comm, recv, count * es, stream));
    if (comm->rank == root && send != recv) memcpy(recv, send, count * es);
    if (count > (size_t)1 << 30) return fail(ncclInvalidArgument, "ncclBroadcast: too large%s%s", "", "");
    if (comm->nranks > 1) MPI_Bcast(recv, (int)count, mt, root, comm->mpi);
    return ncclSuccess;
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t dt,
                               ncclRedOp_t op, ncclComm_t comm, cudaStream_t stream) {
    MPI_Datatype mt;
    size_t es = type_size(dt, &mt);
    CHECK(float_sum("ncclReduceScatter", dt, op));
    CHECK(check("ncclReduceScatter send", comm, send, recvcount * comm->nranks * es, stream));
    CHECK(check("ncclReduceScatter recv", comm, recv, recvcount * es, stream));
    if (recvcount > (size_t)1 << 30) return fail(ncclInvalidArgument, "ncclReduceScatter: too large%s%s", "", "");
    if (comm->nranks > 1) MPI_Reduce_scatter_block(send, recv, (int)recvcount, mt, MPI_SUM, comm->mpi);
    else if (send != recv) memcpy(recv, send, recvcount * es);
    if (op == ncclAvg)
        for (size_t i = 0; i < recvcount; i++) ((float *)recv)[i] /= (float)comm->nranks;
    return ncclSuccess;
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t dt,
                           ncclComm_t comm, cudaStream_t stream) {
    MPI_Datatype mt;
    size_t es = type_size(dt, &mt);
    if (!es) return fail(ncclInvalidArgument, "ncclAllGather: data type not emulated%s%s", "", "");
    CHECK(check("ncclAllGather send", comm, send, sendcount * es, stream));
    CHECK(check("ncclAllGather recv", comm, recv, sendcount * comm->nranks * es, stream));
    if (sendcount > (size_t)1 << 30) return fail(ncclInvalidArgument, "ncclAllGather: too large%s%s", "", "");
    /* NCCL allows send to be recv + rank * sendcount (in place) */
    const char *in_place = (const char *)recv + (size_t)comm->rank * sendcount * es;
    if (comm->nranks > 1)
        MPI_Allgather(send == in_place ? MPI_IN_PLACE : send, (int)sendcount, mt, recv,
                      (int)sendcount, mt, comm->mpi);
    else if (send != recv)
        memcpy(recv, send, sendcount * es);
    return ncclSuccess;
}
