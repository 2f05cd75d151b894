-- A registrant's answers to their event's registration questions
-- (`registrants.answers.*`): the configured question name and the value the
-- platform's item holds there, sent with a webinar or town hall
-- registration.
ALTER TABLE registrants ADD COLUMN answers JSONB NOT NULL DEFAULT '{}';
