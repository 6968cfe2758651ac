ALTER TABLE login_throttle DROP COLUMN IF EXISTS in_flight_since;
ALTER TABLE login_throttle DROP COLUMN IF EXISTS in_flight;
