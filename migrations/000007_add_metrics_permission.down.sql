DELETE FROM permissions WHERE code = 'metrics:view';
