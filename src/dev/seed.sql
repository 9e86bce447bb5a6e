-- Demo data for `rowcast dev`. Idempotent: fixed ids, ON CONFLICT DO NOTHING. Runs as the owner.
INSERT INTO public.tenants (id, name) VALUES
    ('10000000-0000-4000-8000-000000000001', 'Acme'),
    ('10000000-0000-4000-8000-000000000002', 'Globex')
ON CONFLICT DO NOTHING;

INSERT INTO public.users (id, email, name, platform_role) VALUES
    ('20000000-0000-4000-8000-000000000001', 'admin@rowcast.dev', 'Platform Admin', 'platform_admin'),
    ('20000000-0000-4000-8000-000000000002', 'alice@acme.test',   'Alice (Acme admin)', NULL),
    ('20000000-0000-4000-8000-000000000003', 'bob@acme.test',     'Bob (Acme user)', NULL),
    ('20000000-0000-4000-8000-000000000004', 'carol@globex.test', 'Carol (Globex admin)', NULL),
    ('20000000-0000-4000-8000-000000000005', 'dan@globex.test',   'Dan (Globex user)', NULL)
ON CONFLICT DO NOTHING;

INSERT INTO public.memberships (tenant_id, user_id, role) VALUES
    ('10000000-0000-4000-8000-000000000001', '20000000-0000-4000-8000-000000000002', 'tenant_admin'),
    ('10000000-0000-4000-8000-000000000001', '20000000-0000-4000-8000-000000000003', 'tenant_user'),
    ('10000000-0000-4000-8000-000000000002', '20000000-0000-4000-8000-000000000004', 'tenant_admin'),
    ('10000000-0000-4000-8000-000000000002', '20000000-0000-4000-8000-000000000005', 'tenant_user')
ON CONFLICT DO NOTHING;
