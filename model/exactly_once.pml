/*
 * regsync's exactly-once protocol, as SPIN checks it (docs/reliability.md,
 * "The model"). Two replicas' workers, the platform poller, an operator and
 * Graph run against the database's rows; every labelled step (a comment
 * [S1] ... [S12]) is cited by the Rust code that implements it.
 *
 * Sizes: N meetings, R workers (the macros below are written for 2 and 2);
 * each meeting has two Teams meetings it can be at (its own, and the one it
 * moves to). Crashes, platform changes, lost answers, late acts, 401s and
 * retries are bounded and lease takeovers end in parking, so every run
 * ends; at the end every meeting must be settled and Graph must hold what
 * the database says (process Settled), and throughout no registration
 * regsync made may be created twice or one of another kind deleted
 * (assertions in act).
 *
 * Each BUG_* switch restores a defect an outside review found; with it on,
 * SPIN must find a counterexample. `model/check` runs them all.
 */

#define N 2            /* meetings */
#define R 2            /* workers (replicas) */
#define L (2 * N)      /* Teams meetings: m and m + N */
#define MAX_STEPS 4    /* Graph calls in one reconcile (the code's MAX_STEPS) */
#define MAX_ATTEMPTS 2 /* sync.max_attempts */

/* Graph's registration at a Teams meeting */
#define NONE 0
#define FOREIGN 255    /* another kind (or a body without @odata.type) */
                       /* otherwise: the id of an externalMeetingRegistration */

/* sync states */
#define DUE 1          /* pending or retrying */
#define INFLIGHT 2
#define SYNCED 3
#define FAILED 4

/* requests and answers */
#define GET 1
#define CREATE 2
#define DELETE 3
#define A_NONE 0
#define A_OK 1         /* 201/204, or a GET that found ours */
#define A_ABSENT 2     /* 404 itemNotFound */
#define A_FOREIGN 3    /* found another kind */
#define A_CONFLICT 4   /* 409 */
#define A_FAILED 5     /* 5xx without acting, or a 401 */
#define A_LOST 6       /* no answer: timeout, dropped connection */

/* The database: one row per meeting. */
bool want[N];          /* desired: registered */
byte at[N];            /* where the platform says the meeting is */
byte state[N];
byte lease[N];         /* the fencing token; 0: none. A worker's claim is
                          * its own number: one worker never holds a meeting
                          * twice, so a fresh claim's token differs from any
                          * stale one, as a fresh uuid does. */
bool expired[N];       /* the lease ran out (a crash or a pause past it) */
bool needs_lookup[N];
byte lookup_at[N];
bool unsettled[N];     /* lookup_not_before lies ahead */
byte rec_id[N];        /* the registration regsync recorded; NONE: none */
byte rec_at[N];
byte attempts[N];
bool checked[N];       /* graph_checked */

/* Graph */
byte reg[L];
byte ids;              /* the last registration id Graph handed out */
byte late_op;          /* a request Graph carries out after its client gave up */
byte late_at;
byte late_m;

/* budgets of the environment */
byte crashes, changes, faults, late, retries;
#ifndef MAX_CRASHES
#define MAX_CRASHES 1
#endif
#ifndef MAX_CHANGES
#define MAX_CHANGES 2
#endif
#ifndef MAX_FAULTS
#define MAX_FAULTS 2
#endif
#ifndef MAX_LATE
#define MAX_LATE 1
#endif
#ifndef MAX_RETRIES
#define MAX_RETRIES 1
#endif

/* ---------------------------------------------------------------- Graph */

/* Carries `op` out at Teams meeting `l` as Graph does, into res/res_id
 * (duplicate protection off: a create over a registration is the duplicate
 * the safety property forbids). */
inline act(op, l)
{
    res_id = NONE;
    if
    :: op == GET ->
        if
        :: reg[l] == NONE -> res = A_ABSENT
        :: reg[l] == FOREIGN -> res = A_FOREIGN
        :: else -> res = A_OK; res_id = reg[l]
        fi
    :: op == CREATE ->
        if
        :: reg[l] == FOREIGN -> res = A_CONFLICT
        :: else ->
            assert(reg[l] == NONE); /* SAFETY: never a second registration */
            ids++; reg[l] = ids; res = A_OK; res_id = ids
        fi
    :: op == DELETE ->
        assert(reg[l] != FOREIGN); /* SAFETY: never delete another kind */
        if
        :: reg[l] == NONE -> res = A_ABSENT
        :: else -> reg[l] = NONE; res = A_OK
        fi
    fi
}

/* [S5] Graph's answer to one request, chosen when it arrives (ans/ans_id):
 * act and answer, act and lose the answer, fail without acting (a 5xx or a
 * 401), or, for a write, act only after the client gave up -- but before
 * graph.timeout_ms plus graph.max_network_delay_ms has passed ([S9] waits
 * for both): the client's TCP_USER_TIMEOUT aborts a connection whose bytes
 * are not acknowledged by the timeout, and what a path (a proxy) still
 * holds then it delivers within max_network_delay_ms or never. */
inline graph_answers(op, l)
{
    if
    :: act(op, l); ans = res; ans_id = res_id
    :: faults < MAX_FAULTS -> faults++; act(op, l); ans = A_LOST
    :: faults < MAX_FAULTS -> faults++; ans = A_FAILED
    :: late < MAX_LATE && op != GET && late_op == 0 ->
        late++; late_op = op; late_at = l; late_m = m; ans = A_LOST
    fi
}

/* Graph carrying out a request its client gave up on. */
active proctype Graph()
{
    byte res, res_id;
end_graph:
    do
    :: atomic { late_op != 0 -> act(late_op, late_at); late_op = 0 }
    od
}

/* ---------------------------------------------------------- the worker */

/* [S8] the fenced outcome write: applies only under the worker's token;
 * a platform change made while the meeting was in flight makes it due. */
inline finish(final)
{
#ifdef BUG_STALE_COMPARE
    /* the defect: `changed` compared a copy read before the row lock */
    stale_want = want[m]; stale_at = at[m];
#endif
    atomic {
        if
        :: lease[m] == tok && !expired[m] ->
#ifdef BUG_STALE_COMPARE
            changed = (stale_want != snap_want || stale_at != snap_at);
#else
            changed = (want[m] != snap_want || at[m] != snap_at);
#endif
            rec_id[m] = k_id; rec_at[m] = k_at;
            needs_lookup[m] = k_lookup; lookup_at[m] = k_lookup_at;
            unsettled[m] = k_lookup && k_unsettled;
            checked[m] = checked[m] || k_checked;
            attempts[m] = k_attempts;
            lease[m] = 0;
            if
            :: changed -> state[m] = DUE; attempts[m] = 0
            :: else -> state[m] = final
            fi
        :: else -> skip   /* the lease moved on: write nothing */
        fi
    }
}

/* A failed attempt: retry (due) or park; written by finish(fin). */
inline failed_attempt()
{
    k_attempts++;
    if
    :: k_attempts >= MAX_ATTEMPTS -> fin = FAILED
    :: else -> fin = DUE
    fi
}

/* Due, or its lease expired; not while an unknown outcome must settle. */
#define claimable(m) ((state[m] == DUE || (state[m] == INFLIGHT && expired[m])) && !(needs_lookup[m] && unsettled[m]))

proctype Worker(byte w)
{
    byte m, tok, step, op, target, ans, ans_id, res, res_id, fin;
    bool bypass;
    bool snap_want, k_lookup, k_unsettled, k_checked, k_foreign, changed, refreshed;
    byte snap_at, k_id, k_at, k_lookup_at, k_attempts;
    bool stale_want; byte stale_at;
end_idle:
    do
    :: /* [S1] claim: a due meeting (not one whose unknown outcome must
        * still settle), or one whose lease expired; a fresh token. */
       atomic {
        if :: claimable(0) -> m = 0 :: claimable(1) -> m = 1 fi;
        if
        :: state[m] == INFLIGHT ->
            attempts[m]++;
            if
            :: attempts[m] >= MAX_ATTEMPTS ->   /* [S1] parked after takeovers */
                state[m] = FAILED; lease[m] = 0; expired[m] = false; goto end_idle
            :: else -> skip
            fi
        :: else -> skip
        fi;
        tok = w + 1; lease[m] = tok; expired[m] = false; state[m] = INFLIGHT;
        snap_want = want[m]; snap_at = at[m];
        k_id = rec_id[m]; k_at = rec_at[m]; k_lookup = needs_lookup[m]; k_lookup_at = lookup_at[m];
        k_unsettled = false; k_checked = false; k_foreign = false; k_attempts = attempts[m];
        refreshed = false; step = 0
       };
       fin = 0;
       do
       :: crashes < MAX_CRASHES -> crashes++; break   /* a crash: local state is lost */
       :: atomic {
          /* [S2] plan: the next step from what is known */
          if
          :: step >= MAX_STEPS -> op = 0          /* out of steps: a failed attempt */
          :: else ->
            if
            :: k_lookup -> op = GET; target = k_lookup_at
            :: !k_lookup && k_id != NONE && (!snap_want || k_at != snap_at) -> op = DELETE; target = k_at
            :: !k_lookup && k_id == NONE && snap_want && !k_foreign -> op = CREATE; target = snap_at
            :: !k_lookup && k_id == NONE && !snap_want && !checked[m] && !k_checked && !k_foreign ->
                op = GET; target = snap_at        /* [S11] first met cancelled: look once */
            :: else -> op = 255                   /* done, or parked for another kind */
            fi
          fi;
          if
          :: op == 255 && k_foreign && snap_want -> fin = FAILED; break   /* another kind: parked */
          :: op == 255 && !(k_foreign && snap_want) -> fin = SYNCED; break
          :: op == 0 -> failed_attempt(); break
          :: else -> step++
          fi;
          /* [S3] the gate: the lease is ours and renewed, the deployment
           * is not held, and for a write the intent is committed. */
          if
          :: lease[m] != tok || expired[m] -> break   /* lease lost: write nothing */
          :: else ->
              if
              :: op != GET -> needs_lookup[m] = true; lookup_at[m] = target; k_lookup = true; k_lookup_at = target
              :: else -> skip
              fi
          fi
          };
          /* between the gate and the send: a crash, or a pause in which
           * the lease may pass on (the Operator's expiry) */
          if
          :: crashes < MAX_CRASHES -> crashes++; break
          :: skip
          fi;
resend:
          atomic {
          /* [S4] the send: the permit's deadline is checked right before
           * the request leaves (the lease is still ours). */
#ifndef BUG_NO_CHECK_AT_SEND
          if
          :: !bypass && (lease[m] != tok || expired[m]) -> break   /* paused past the deadline: not sent */
          :: else -> skip
          fi;
#endif
          bypass = false;
          graph_answers(op, target);
          /* [S6] learn from the answer */
          if
          :: ans == A_OK && op == GET -> k_lookup = false; k_id = ans_id; k_at = target; k_checked = true
          :: ans == A_OK && op == CREATE -> k_lookup = false; k_id = ans_id; k_at = target; k_checked = true
          :: ans == A_OK && op == DELETE -> k_lookup = false; k_id = NONE; k_checked = true
          :: ans == A_ABSENT && op == GET -> k_lookup = false; k_id = NONE; k_checked = true
          :: ans == A_ABSENT && op == DELETE -> k_lookup = false; k_id = NONE; k_checked = true
          :: ans == A_FOREIGN ->
#ifdef BUG_ADOPT_UNTYPED
             /* the defect: a registration of unknown kind counted as ours */
             k_lookup = false; k_id = FOREIGN; k_at = target; k_checked = true
#else
             k_lookup = false; k_id = NONE; k_foreign = (target == snap_at); k_checked = true
#endif
          :: ans == A_CONFLICT -> k_lookup = true; k_lookup_at = target  /* [S7] 409: look it up */
          :: ans == A_FAILED && op != GET && !refreshed ->
             /* a 401 (or a 5xx: the next branch): one fresh token, one more try */
             refreshed = true;
#ifdef BUG_RESEND_BYPASS
             bypass = true   /* the defect: the re-send skips the gate and the check */
#else
             k_lookup = false
#endif
          :: ans == A_FAILED && op != GET -> k_lookup = false; failed_attempt(); break
          :: ans == A_FAILED && op == GET -> failed_attempt(); break
          :: ans == A_LOST && op == GET -> failed_attempt(); break
          :: ans == A_LOST && op != GET ->
             /* [S9] unknown outcome: the lookup waits for it to settle */
             k_unsettled = true; failed_attempt(); break
          fi
          };
          if
          :: bypass -> goto resend   /* after the token fetch, some time later */
          :: else -> skip
          fi
       od;
       /* [S8] the outcome, in a step of its own */
       if
       :: fin != 0 -> finish(fin)
       :: else -> skip
       fi;
       /* idle: forget this meeting (fewer states, same behaviour) */
       skip;
       d_step {
        m = 0; tok = 0; step = 0; op = 0; target = 0; snap_want = false; snap_at = 0;
        k_lookup = false; k_unsettled = false; k_checked = false; k_foreign = false; changed = false;
        refreshed = false; k_id = 0; k_at = 0; k_lookup_at = 0; k_attempts = 0; stale_want = false; stale_at = 0;
        ans = 0; ans_id = 0; res = 0; res_id = 0; fin = 0
       }
    od
}

/* ------------------------------------------------ the platform, operators */

/* [S10] ingest: a changed meeting becomes due, unless a worker holds it
 * (its fenced outcome write notices the change). */
active proctype Poller()
{
    byte m;
end_poll:
    do
    :: changes < MAX_CHANGES ->
       atomic {
        changes++;
        select(m : 0 .. N - 1);
        if
        :: want[m] = !want[m]             /* cancel, or activate again */
        :: at[m] = (at[m] == m -> m + N : m)   /* moved to another Teams meeting */
        fi;
        if
        :: state[m] != INFLIGHT -> state[m] = DUE; attempts[m] = 0
#ifdef BUG_NO_SETTLE_ON_INGEST
           ; unsettled[m] = false         /* the defect: ingest made it due at once */
#endif
        :: else -> skip
        fi
       }
    od
}

#define in_flight_at_graph(m) (late_op != 0 && late_m == m)

/* What operators and time do to meeting k. */
inline operate(k)
{
    if
    :: atomic { retries < MAX_RETRIES && state[k] == FAILED -> retries++; state[k] = DUE; attempts[k] = 0 }
    :: atomic { state[k] == INFLIGHT && !expired[k] && !in_flight_at_graph(k) -> expired[k] = true }
       /* the lease runs out: its worker crashed or paused. A request is
        * never still at Graph then: it ends within graph.timeout_ms, at most
        * a quarter lease, and leaves by half the lease or not at all. */
    :: atomic { unsettled[k] && !(late_op != 0 && late_m == k) -> unsettled[k] = false }
       /* time passes: a request that may still act has finished [S9] */
    fi
}

/* [S12] `regsync retry`: a failed meeting is due again, attempts reset;
 * its lookup still waits. A worker that died leaves an expired lease. */
active proctype Operator()
{
end_op:
    do
    :: operate(0)
    :: operate(1)
    od
}

/* At the end: every meeting settled, Graph holds what the database says. */
active proctype Settled()
{
    byte m;
    timeout ->
    atomic {
        for (m : 0 .. N - 1) {
            assert(state[m] == SYNCED || state[m] == FAILED);  /* LIVENESS: nothing in flight or due */
            assert(!in_flight_at_graph(m));
            if
            :: state[m] == SYNCED && want[m] ->
                assert(rec_id[m] != NONE && rec_at[m] == at[m] && reg[at[m]] == rec_id[m])
            :: state[m] == SYNCED && !want[m] ->
                assert(rec_id[m] == NONE);
                assert(reg[m] == NONE || reg[m] == FOREIGN);
                assert(reg[m + N] == NONE || reg[m + N] == FOREIGN)
            :: else -> skip
            fi
        }
    }
}

init
{
    byte m;
    atomic {
        for (m : 0 .. N - 1) {
            want[m] = true; at[m] = m; state[m] = DUE
        }
        /* meeting 1's first Teams meeting already holds another kind */
        reg[1] = FOREIGN;
        run Worker(0);
        run Worker(1)
    }
}
