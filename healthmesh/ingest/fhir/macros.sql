-- SQL helpers for the mapping. ${salt} is the hub's key material, set per connection.
CREATE OR REPLACE TEMP MACRO hm_key(kind, id) AS
    ('0x' || substr(md5(getvariable('hm_salt') || '|' || kind || '|' || id), 1, 15))::BIGINT;
CREATE OR REPLACE TEMP MACRO hm_ref(r) AS CASE
    WHEN r IS NULL THEN NULL
    WHEN starts_with(r, 'urn:uuid:') THEN substr(r, 10)
    WHEN starts_with(r, 'urn:oid:') THEN substr(r, 9)
    WHEN contains(r, '?identifier=') THEN 'identifier:' || split_part(split_part(r, '?identifier=', 2), '|', -1)
    WHEN regexp_matches(r, '[A-Z][A-Za-z]+/[^/]+(/_history/[^/]+)?$')
        THEN regexp_extract(r, '([A-Z][A-Za-z]+)/([^/]+)(/_history/[^/]+)?$', 2)
    ELSE r END;
-- FHIR date / dateTime / instant to a local TIMESTAMP; NULL when it is not one.
CREATE OR REPLACE TEMP MACRO hm_ts(x) AS CASE
    WHEN x IS NULL OR length(x) > 40 THEN NULL
    WHEN length(x) = 4 AND regexp_full_match(x, '[0-9]{4}') THEN make_timestamp(x::INT, 1, 1, 0, 0, 0)
    WHEN length(x) = 7 THEN try_cast(x || '-01' AS TIMESTAMP)
    WHEN length(x) = 10 THEN try_cast(x AS TIMESTAMP)
    WHEN regexp_full_match(x, '[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]+)?)?(Z|[+-][0-9]{2}:[0-9]{2})?')
        THEN try_cast(replace(substr(x, 1, 19), 'T', ' ') AS TIMESTAMP)
    ELSE NULL END;
