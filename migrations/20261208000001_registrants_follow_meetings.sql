-- Registrants follow their meeting's registration: Graph deletes a meeting's
-- registrants with its registration, so where a registrant is enrolled now
-- names the registration it was enrolled under (a fourth element of the
-- place key), and a change of the meeting makes its registrants due.
UPDATE registrants r
SET enrolled_at = jsonb_build_array('meeting', m.registered_organizer_id, m.registered_meeting_id,
                                    m.registration_id)::text
FROM meetings m
WHERE m.external_id = r.meeting_external_id AND m.registration_id IS NOT NULL
  AND r.enrolled_at IS NOT NULL AND jsonb_array_length(r.enrolled_at::jsonb) = 3
  AND r.enrolled_at::jsonb ->> 0 = 'meeting'
  AND r.enrolled_at::jsonb ->> 1 = m.registered_organizer_id
  AND r.enrolled_at::jsonb ->> 2 = m.registered_meeting_id;
UPDATE registrants r
SET lookup_at = jsonb_build_array('meeting', m.registered_organizer_id, m.registered_meeting_id,
                                  m.registration_id)::text
FROM meetings m
WHERE m.external_id = r.meeting_external_id AND m.registration_id IS NOT NULL
  AND r.lookup_at IS NOT NULL AND jsonb_array_length(r.lookup_at::jsonb) = 3
  AND r.lookup_at::jsonb ->> 0 = 'meeting'
  AND r.lookup_at::jsonb ->> 1 = m.registered_organizer_id
  AND r.lookup_at::jsonb ->> 2 = m.registered_meeting_id;
-- What is left named a registration that no longer exists: its registrants
-- went with it. They are enrolled again (with a new link written back).
UPDATE registrants
SET enrolled_at = NULL, registrant_id = NULL, join_web_url = NULL, state = 'pending', next_attempt_at = now()
WHERE enrolled_at IS NOT NULL AND jsonb_array_length(enrolled_at::jsonb) = 3;
UPDATE registrants
SET needs_lookup = FALSE, lookup_at = NULL, state = 'pending', next_attempt_at = now()
WHERE lookup_at IS NOT NULL AND jsonb_array_length(lookup_at::jsonb) = 3;

ALTER TABLE registrants
    -- The meeting changed while this registrant was in flight: its outcome
    -- makes it due again instead of settling.
    ADD COLUMN meeting_changed BOOLEAN NOT NULL DEFAULT FALSE,
    -- A write whose outcome is unknown may still be in progress at Graph:
    -- no lookup before this time, whatever made the registrant due.
    ADD COLUMN lookup_not_before TIMESTAMPTZ,
    -- When the intent of the last write whose outcome is unknown was
    -- committed: a webinar list may lag behind it (graph.list_settle_secs).
    ADD COLUMN intent_at TIMESTAMPTZ;
