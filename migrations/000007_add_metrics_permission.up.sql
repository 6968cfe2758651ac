-- Greenlight's own permission for /debug/vars and /metrics (the book leaves them open).
INSERT INTO permissions (code) SELECT 'metrics:view' WHERE NOT EXISTS (SELECT 1 FROM permissions WHERE code = 'metrics:view');
