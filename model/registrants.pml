/*
 * The registrant side of exactly-once (docs/reliability.md, "The model"):
 * a person follows their meeting's registration, and a lost answer is
 * never read as "absent" from a list that lags behind.
 *
 * Part 1, meeting registration (beta). Graph deletes a meeting's
 * registrants with its registration. The meeting's worker re-creates the
 * registration (a move, an audience change): delete, then create, each
 * followed by its fenced outcome, which wakes the meeting's registrants in
 * the same statement (store::outcome, `woken`). Two registrant workers
 * reconcile the person whenever they are due; a registrant's recorded
 * place names the registration it was enrolled under, and one under a
 * registration the meeting no longer holds is forgotten without a call.
 * A create goes to whatever registration Graph holds when it arrives.
 *
 * Part 2, webinar (v1.0). A registration's create may act while its
 * answer is lost; Graph's list may not show it yet. The worker looks the
 * unknown outcome up; "not listed" counts as "absent" only after the
 * settle time, which the list's lag never exceeds (graph.list_settle_secs
 * is chosen so).
 *
 * Properties, at every end state: the person is enrolled exactly once,
 * under the registration Graph holds now, and regsync records that
 * registration; the webinar holds exactly one live registration for them.
 *
 * Defect switches (model/check: each must give a counterexample):
 *   BUG_NO_WAKE        the meeting's outcome does not wake its registrants
 *   BUG_NO_FORGET      a registrant under a dead registration counts as enrolled
 *   BUG_ABSENT_ON_LAG  "not listed" is read as absent before the settle time
 */

#define NONE 0

/* ------------------------------------------------------------ part 1 */

byte graph_reg;        /* the registration Graph holds: its generation; NONE */
byte person_under;     /* the registration Graph holds the person under; NONE */
byte enrolments;       /* the person's live enrolments at Graph */
byte db_reg;           /* the registration regsync recorded for the meeting */
byte db_under;         /* the registration regsync recorded the person under */
bool due;              /* the registrant is due */
bool claimed;          /* a worker holds the registrant (its lease) */
bool changed;          /* woken while claimed: due again at its outcome */
bool meeting_done;

/* The meeting's fenced outcome, with the registrants' wake-up. */
inline record_meeting(gen)
{
    atomic {
        db_reg = gen;
#ifndef BUG_NO_WAKE
        if
        :: claimed -> changed = true
        :: else -> due = true
        fi
#endif
    }
}

/* The meeting's worker: re-create the registration once. */
proctype Meeting()
{
    /* Graph deletes the registration, and its registrants with it. */
    atomic {
        graph_reg = NONE;
        if
        :: person_under != NONE -> person_under = NONE; enrolments--
        :: else -> skip
        fi
    }
    record_meeting(NONE);
    atomic { graph_reg = 2 }
    record_meeting(2);
    meeting_done = true
}

/* A registrant worker: claim when due, plan from the rows, one call,
 * record fenced; what it planned on may be stale by then. */
proctype RegistrantWorker()
{
    byte seen_reg, seen_under, result;
end_idle:
    do
    :: atomic { due && !claimed -> due = false; claimed = true; seen_reg = db_reg; seen_under = db_under }
        result = seen_under;
        if
#ifndef BUG_NO_FORGET
        :: seen_under != NONE && seen_under != seen_reg ->
            /* Gone with its registration: forget it, no call. */
            result = NONE
#endif
        :: else -> skip
        fi;
        if
        :: result == NONE && seen_reg != NONE ->
            /* Enrol: the POST reaches whatever registration Graph holds. */
            atomic {
                if
                :: graph_reg != NONE && person_under == NONE ->
                    person_under = graph_reg; enrolments++; result = seen_reg
                :: graph_reg != NONE && person_under != NONE ->
                    /* 409: already there; the lookup adopts it. */
                    result = seen_reg
                :: graph_reg == NONE ->
                    /* 404: no registration now; try again later. */
                    result = NONE; changed = true
                fi
            }
        :: else -> skip
        fi;
        atomic {
            db_under = result;
            claimed = false;
            if
            :: changed -> changed = false; due = true
            :: else -> skip
            fi
        }
    od
}

/* ------------------------------------------------------------ part 2 */

byte live;             /* the webinar's live registrations for the person */
byte listed;           /* how many of them its list shows yet */
bool settled;          /* the settle time has passed since the last create */
bool lost_once;        /* the environment loses one answer */
bool webinar_done;

/* The list catches up; the settle time passes only after it did. */
proctype Lag()
{
end_lag:
    do
    :: atomic { listed < live -> listed = live }
    :: atomic { !settled && listed == live -> settled = true }
    od
}

proctype WebinarWorker()
{
    bool unknown = false;
    do
    :: !unknown ->
        /* Register: it acts, and its answer may be lost; or a 5xx that
         * did not act, its outcome just as unknown. */
        if
        :: atomic { live++; settled = false }
            if
            :: !lost_once -> lost_once = true; unknown = true
            :: true -> break
            fi
        :: !lost_once -> atomic { lost_once = true; settled = false }; unknown = true
        fi
    :: unknown ->
        /* Look the unknown outcome up. */
        if
        :: atomic { listed > 0 -> unknown = false } -> break
#ifdef BUG_ABSENT_ON_LAG
        :: atomic { listed == 0 -> unknown = false }
#else
        :: atomic { listed == 0 && settled -> unknown = false }
#endif
        fi
    od;
    webinar_done = true
}

init
{
    graph_reg = 1; db_reg = 1; due = true;
    atomic {
        run Meeting();
        run RegistrantWorker();
        run RegistrantWorker();
        run Lag();
        run WebinarWorker()
    }
}

/* Once everything is done and nothing is due or held (nothing changes
 * after), the books agree with Graph. */
active proctype Books()
{
end_books:
    atomic {
        meeting_done && webinar_done && !due && !claimed ->
        assert(enrolments == 1 && person_under == graph_reg && db_under == graph_reg);
        assert(live == 1)
    }
}
