-- Views over an export's tables (`tamga sql` creates them; docs/ANALYTICS.md shows them
-- for Spark and Trino). Each table is first a view of its Parquet files named
-- `<table>_files`; the views below add what the files keep in other tables.
-- Reports are views named `report_<name>` (`tamga sql --report NAME`); their
-- parameters are DuckDB variables with the defaults set here (`--param NAME=VALUE`).
-- "Now" is the time of the last exported block, not the clock: a report on the same
-- files always gives the same answer.

CREATE OR REPLACE VIEW blocks AS SELECT * FROM blocks_files;
CREATE OR REPLACE VIEW documents AS SELECT * FROM documents_files;
CREATE OR REPLACE VIEW code_events AS SELECT * FROM code_events_files;
CREATE OR REPLACE VIEW flows AS SELECT * FROM flows_files;

-- A shipment with its outcome: the applied accept, reject or cancel that names it.
CREATE OR REPLACE VIEW shipments AS
SELECT s.*,
       CASE d.type
           WHEN 'accept' THEN CASE WHEN d.named > 0 AND d.named < s.items THEN 'partially_accepted'
                                   ELSE 'accepted' END
           WHEN 'reject' THEN 'rejected'
           WHEN 'cancel_shipment' THEN 'cancelled'
           ELSE 'pending'
       END AS status,
       d.height AS closed_height,
       d.time AS closed_time
FROM shipments_files s
LEFT JOIN documents_files d
       ON d.shipment = s.id AND d.status = 'applied'
      AND d.type IN ('accept', 'reject', 'cancel_shipment');

-- A participant with its revocation, if any.
CREATE OR REPLACE VIEW participants AS
SELECT p.*,
       CASE WHEN r.height IS NULL THEN 'active' ELSE 'revoked' END AS status,
       r.height AS revoked_height
FROM participants_files p
LEFT JOIN documents_files r
       ON r.participant = p.id AND r.type = 'revoke_participant' AND r.status = 'applied';

-- The time of the last exported block: "now" for every report.
CREATE OR REPLACE VIEW export_head AS SELECT max(height) AS height, max(time) AS time FROM blocks_files;

-- Where a document is in the chain, as one number that orders like (height, position).
CREATE OR REPLACE MACRO place(height, position) AS height * 1000000 + position;

-- Each stay of a code inside an aggregate: packed at `packed`, unpacked at `unpacked`
-- (NULL while still packed). An SSCC is used once, so a stay is one pair of events.
CREATE OR REPLACE VIEW packings AS
SELECT p.code, p.sscc,
       place(p.height, p.position) AS packed,
       place(u.height, u.position) AS unpacked
FROM code_events p
LEFT JOIN code_events u
       ON u.code = p.code AND u.sscc = p.sscc AND u.type = 'disaggregate' AND u.status = 'applied'
WHERE p.type = 'aggregate' AND p.status = 'applied' AND p.sscc IS NOT NULL;

-- A code's whole history as the node's API gives it: its own applied events, and the
-- events of each aggregate it sat in meanwhile (`via` names that aggregate), however
-- deep the nesting.
CREATE OR REPLACE VIEW code_history AS
WITH RECURSIVE containers(code, container, lo, hi, depth) AS (
    SELECT DISTINCT code, code, CAST(-1 AS BIGINT), CAST(9223372036854775807 AS BIGINT), 0
    FROM code_events WHERE status = 'applied'
    UNION ALL
    SELECT c.code, k.sscc,
           greatest(c.lo, k.packed + 1),
           least(c.hi, coalesce(k.unpacked, 9223372036854775807) - 1),
           c.depth + 1
    FROM containers c JOIN packings k ON k.code = c.container
    WHERE greatest(c.lo, k.packed + 1) <= least(c.hi, coalesce(k.unpacked, 9223372036854775807) - 1)
      AND c.depth < 8
)
SELECT c.code, e.height, e.position, e.time, e.document_id, e.type, e.sscc,
       CASE WHEN c.container = c.code THEN NULL ELSE c.container END AS via,
       e.signer, e.signer_state, e.shipment, e.receiver
FROM containers c
JOIN code_events e
  ON e.code = c.container AND e.status = 'applied'
 AND place(e.height, e.position) BETWEEN c.lo AND c.hi;

-- Report parameters and their defaults.
SET VARIABLE circulation_days_max = 365;
SET VARIABLE unaccepted_days_max = 3;
SET VARIABLE spike_factor = 3;
SET VARIABLE spike_refusals_min = 5;

-- Attempts to move or sell a code that had already moved, been sold or was otherwise
-- not the signer's to move: refused documents by reason and by participant.
CREATE OR REPLACE VIEW report_double_moves AS
SELECT d.signer, d.signer_state, d.type, d.reason,
       count(*) AS refused_documents,
       sum(d.named) AS codes_named,
       min(d.time) AS first_time,
       max(d.time) AS last_time
FROM documents d
WHERE d.status = 'rejected'
  AND d.type IN ('ship', 'retire', 'aggregate', 'disaggregate', 'accept', 'return', 'introduce')
  AND d.reason IN ('in_transit', 'wrong_status', 'not_owner', 'in_aggregate', 'repeated_code',
                   'unknown_shipment', 'not_in_shipment')
GROUP BY ALL
ORDER BY refused_documents DESC, d.signer, d.type, d.reason;

-- The same refusals code by code: which codes someone tried to move twice.
CREATE OR REPLACE VIEW report_double_move_codes AS
SELECT e.code, e.gtin, count(*) AS refused_attempts,
       list(DISTINCT e.reason ORDER BY e.reason) AS reasons,
       list(DISTINCT e.signer ORDER BY e.signer) AS signers,
       max(e.time) AS last_time
FROM code_events e
WHERE e.status = 'rejected'
  AND e.type IN ('ship', 'retire', 'aggregate', 'return')
  AND e.reason IN ('in_transit', 'wrong_status', 'not_owner', 'in_aggregate', 'repeated_code')
GROUP BY ALL
ORDER BY refused_attempts DESC, e.code;

-- Public checks are reads: they are answered by one node and never recorded on the
-- chain, so "checked but never introduced" cannot be computed from it. What the chain
-- does record: codes that documents named (and the ledger refused) although the code
-- was never introduced into circulation: unknown codes, or codes emitted but never
-- introduced that someone tried to move or sell.
CREATE OR REPLACE VIEW report_never_introduced AS
SELECT e.code, e.gtin,
       bool_or(e.type = 'emit' AND e.status = 'applied') AS emitted,
       count(*) FILTER (WHERE e.status = 'rejected') AS refused_documents,
       list(DISTINCT e.reason ORDER BY e.reason) FILTER (WHERE e.status = 'rejected') AS reasons,
       list(DISTINCT e.signer ORDER BY e.signer) FILTER (WHERE e.status = 'rejected') AS signers,
       max(e.time) AS last_time
FROM code_events e
WHERE e.kind = 'unit'  -- an aggregate comes into circulation by packing, never by introduce
GROUP BY e.code, e.gtin
HAVING NOT bool_or(e.type = 'introduce' AND e.status = 'applied')
   AND count(*) FILTER (WHERE e.status = 'rejected' AND e.type <> 'emit') > 0
ORDER BY refused_documents DESC, e.code;

-- Units in circulation (introduced or returned, not retired since) for longer than
-- `circulation_days_max` days. The chain has no product groups yet (no catalogue), so
-- one limit serves every GTIN.
CREATE OR REPLACE VIEW report_long_in_circulation AS
WITH last_event AS (
    SELECT code, gtin,
           arg_max(type, place(height, position)) AS last_type,
           max(time) FILTER (WHERE type IN ('introduce', 'return')) AS in_circulation_since
    FROM code_events
    WHERE status = 'applied' AND kind = 'unit'
    GROUP BY code, gtin
)
SELECT l.code, l.gtin, l.in_circulation_since,
       date_diff('day', l.in_circulation_since, h.time) AS days
FROM last_event l, export_head h
WHERE l.in_circulation_since IS NOT NULL
  AND l.last_type NOT IN ('retire', 'emit')
  AND date_diff('day', l.in_circulation_since, h.time) > getvariable('circulation_days_max')
ORDER BY days DESC, l.code;

-- Sales after expiry: units sold at retail (retire retail_sale or remote_sale) after the
-- expiry date (AI 17) their print report, introduction or import gave them.
CREATE OR REPLACE VIEW report_sales_after_expiry AS
WITH expiry AS (
    SELECT e.code, min(d.expiry) AS expiry
    FROM code_events e JOIN documents d ON d.id = e.document_id
    WHERE e.status = 'applied' AND d.expiry IS NOT NULL
    GROUP BY e.code
)
SELECT s.code, s.gtin, s.signer AS seller, s.signer_state AS state, s.time AS sold, x.expiry,
       date_diff('day', x.expiry, CAST(s.time AS DATE)) AS days_after_expiry, s.document_id
FROM code_events s
JOIN documents d ON d.id = s.document_id
JOIN expiry x ON x.code = s.code
WHERE s.type = 'retire' AND s.status = 'applied' AND d.retire_reason IN ('retail_sale', 'remote_sale')
  AND CAST(s.time AS DATE) > x.expiry
ORDER BY days_after_expiry DESC, s.code;

-- Cross-border shipments still pending `unaccepted_days_max` days after they left.
CREATE OR REPLACE VIEW report_unaccepted_cross_border AS
SELECT s.id, s.from_state, s.to_state, s.shipper, s.receiver, s.items, s.units, s.time,
       date_diff('day', s.time, h.time) AS days_pending
FROM shipments s, export_head h
WHERE s.cross_border AND s.status = 'pending'
  AND date_diff('day', s.time, h.time) >= getvariable('unaccepted_days_max')
ORDER BY days_pending DESC, s.id;

-- Participants whose refusals on a day reach `spike_factor` times their daily average
-- over the previous 30 days (at least `spike_refusals_min` of them).
CREATE OR REPLACE VIEW report_refusal_spikes AS
WITH daily AS (
    SELECT signer, signer_state, date_trunc('day', time) AS day, count(*) AS refusals
    FROM documents WHERE status = 'rejected' AND signer IS NOT NULL
    GROUP BY ALL
), compared AS (
    SELECT *,
           coalesce(sum(refusals) OVER (PARTITION BY signer ORDER BY day
                    RANGE BETWEEN INTERVAL 30 DAY PRECEDING AND INTERVAL 1 DAY PRECEDING), 0) / 30.0
               AS daily_average_before
    FROM daily
)
SELECT signer, signer_state, day, refusals, round(daily_average_before, 2) AS daily_average_before
FROM compared
WHERE refusals >= getvariable('spike_refusals_min')
  AND refusals >= getvariable('spike_factor') * daily_average_before
ORDER BY day DESC, refusals DESC;

-- Units that crossed each border, by month and GTIN (the query bench/README.md times).
CREATE OR REPLACE VIEW report_flows_by_month AS
SELECT date_trunc('month', time) AS month, from_state, to_state, gtin,
       count(DISTINCT shipment) AS shipments, sum(units) AS units
FROM flows
GROUP BY ALL
ORDER BY month, from_state, to_state, gtin;
