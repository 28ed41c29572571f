-- The typed staging table: every source (FHIR Bundle, Bulk NDJSON, Synthea CSV) lands here first,
-- one row per input record, and one mapping (map.py) takes it into the CDM. A record names its input
-- file by number (hm_files, numbered in name order), not by a path copied onto every row.
CREATE OR REPLACE TEMP TABLE hm_files (file_no INTEGER, file VARCHAR);
CREATE OR REPLACE TEMP TABLE hm_stage (
    file_no INTEGER, rec BIGINT, entry BIGINT,
    resource_type VARCHAR, rid VARCHAR, parse_error VARCHAR,
    subject_ref VARCHAR, visit_ref VARCHAR, provider_ref VARCHAR, care_site_ref VARCHAR,
    code_system VARCHAR, code VARCHAR, code_display VARCHAR,
    start_raw VARCHAR, end_raw VARCHAR, start_field VARCHAR,
    value_num_raw VARCHAR, value_unit VARCHAR,
    value_system VARCHAR, value_code VARCHAR, value_display VARCHAR, value_string VARCHAR,
    category VARCHAR, visit_class VARCHAR,
    gender VARCHAR, birth_raw VARCHAR, deceased_raw VARCHAR, deceased_flag VARCHAR, race VARCHAR,
    addr_state VARCHAR, addr_city VARCHAR, addr_postal VARCHAR,
    org_name VARCHAR, identifier_system VARCHAR, identifier_value VARCHAR,
    med_ref VARCHAR, contained VARCHAR,  -- read by the stage only: references to resolve
    component VARCHAR, parent_rid VARCHAR,
    fhir_status VARCHAR, ethnicity VARCHAR
);
