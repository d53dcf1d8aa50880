-- Raw click events, one row per event id: the store analysts query.
--
-- Not partitioned by day on purpose: a partitioned table's primary key must include the
-- partition column, so idempotency would rest on (event_id, event_time) instead of event_id
-- alone. A BRIN index keeps time-range scans cheap on this append-mostly table; revisit
-- partitioning (and retention by dropping partitions) at billions of rows.
CREATE TABLE click_events (
    event_id         text        PRIMARY KEY,
    event_time       timestamptz NOT NULL,
    event_type       text        NOT NULL CHECK (event_type IN ('page_view', 'click', 'search',
                         'add_to_cart', 'remove_from_cart', 'checkout', 'purchase', 'login',
                         'logout', 'ad_click', 'other')),
    session_id       text        NOT NULL,
    user_id          text,
    url              text        NOT NULL,
    referrer         text,
    -- The client address when it parses as one; otherwise NULL and the text is in ip_raw.
    ip               inet,
    ip_raw           text,
    user_agent       text,
    device           text,
    country          text,
    properties       jsonb,
    -- Where the event was read from (Kafka partition and offset), when it came from Kafka.
    source_partition integer,
    source_offset    bigint,
    ingest_time      timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX click_events_time_brin ON click_events USING brin (event_time);
CREATE INDEX click_events_session ON click_events (session_id, event_time);
CREATE INDEX click_events_user ON click_events (user_id, event_time) WHERE user_id IS NOT NULL;
CREATE INDEX click_events_url_time ON click_events (url, event_time);
