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

-- Billing: two plans with their limits; Acme is on Pro, Globex on Starter.
INSERT INTO public.plans (id, code, name, description, price_cents, currency, billing_interval) VALUES
    ('30000000-0000-4000-8000-000000000001', 'starter', 'Starter', 'Try rowcast: small lists, a few campaigns.', 0, 'EUR', 'month'),
    ('30000000-0000-4000-8000-000000000002', 'pro', 'Pro', 'Large lists, unlimited campaigns, webhooks.', 4900, 'EUR', 'month')
ON CONFLICT DO NOTHING;

INSERT INTO public.limit_policies (id, plan_id, metric, limit_value, period) VALUES
    ('31000000-0000-4000-8000-000000000001', '30000000-0000-4000-8000-000000000001', 'messages', 1000, 'month'),
    ('31000000-0000-4000-8000-000000000002', '30000000-0000-4000-8000-000000000001', 'contacts', 500, 'lifetime'),
    ('31000000-0000-4000-8000-000000000003', '30000000-0000-4000-8000-000000000002', 'messages', 100000, 'month'),
    ('31000000-0000-4000-8000-000000000004', '30000000-0000-4000-8000-000000000002', 'contacts', 50000, 'lifetime')
ON CONFLICT DO NOTHING;

INSERT INTO public.subscriptions (id, tenant_id, plan_id, status) VALUES
    ('32000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', '30000000-0000-4000-8000-000000000002', 'active'),
    ('32000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000002', '30000000-0000-4000-8000-000000000001', 'trialing')
ON CONFLICT DO NOTHING;

INSERT INTO public.usages (id, tenant_id, metric, quantity) VALUES
    ('33000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', 'sms_segments', 42),
    ('33000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000002', 'sms_segments', 2)
ON CONFLICT DO NOTHING;

-- Contacts: three at Acme, two at Globex (same phone number in both tenants: allowed).
INSERT INTO public.contacts (id, tenant_id, phone, first_name, last_name, email, language, attributes) VALUES
    ('40000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', '+33612345601', 'Ann', 'Martin', 'ann@example.com', 'fr', '{"city": "Lyon"}'),
    ('40000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000001', '+33612345602', 'Bruno', 'Petit', NULL, 'fr', '{}'),
    ('40000000-0000-4000-8000-000000000003', '10000000-0000-4000-8000-000000000001', '+14155550103', 'Chloe', 'Smith', 'chloe@example.com', 'en', '{"vip": true}'),
    ('40000000-0000-4000-8000-000000000004', '10000000-0000-4000-8000-000000000002', '+14155550104', 'Dora', 'Jones', NULL, 'en', '{}'),
    ('40000000-0000-4000-8000-000000000005', '10000000-0000-4000-8000-000000000002', '+33612345601', 'Emile', 'Durand', NULL, 'fr', '{}')
ON CONFLICT DO NOTHING;

-- Groups with members.
INSERT INTO public.groups (id, tenant_id, name, description) VALUES
    ('41000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', 'VIP customers', 'Acme''s best customers'),
    ('41000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000002', 'Newsletter', 'Everyone who asked for news')
ON CONFLICT DO NOTHING;

INSERT INTO public.group_contacts (id, tenant_id, group_id, contact_id) VALUES
    ('42000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', '41000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000001'),
    ('42000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000001', '41000000-0000-4000-8000-000000000001', '40000000-0000-4000-8000-000000000003'),
    ('42000000-0000-4000-8000-000000000003', '10000000-0000-4000-8000-000000000002', '41000000-0000-4000-8000-000000000002', '40000000-0000-4000-8000-000000000004'),
    ('42000000-0000-4000-8000-000000000004', '10000000-0000-4000-8000-000000000002', '41000000-0000-4000-8000-000000000002', '40000000-0000-4000-8000-000000000005')
ON CONFLICT DO NOTHING;

-- Templates: one shared (tenant_id NULL, platform admins only), one per tenant.
INSERT INTO public.message_templates (id, tenant_id, name, language, category, body, variables) VALUES
    ('43000000-0000-4000-8000-000000000001', NULL, 'appointment_reminder', 'en', 'utility',
     'Hi {{first_name}}, this is a reminder of your appointment.', '{first_name}'),
    ('43000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000001', 'spring_sale', 'en', 'marketing',
     'Hello {{first_name}}, Acme''s spring sale starts today!', '{first_name}'),
    ('43000000-0000-4000-8000-000000000003', '10000000-0000-4000-8000-000000000002', 'digest', 'en', 'marketing',
     'Hi {{first_name}}, here is your Globex weekly digest.', '{first_name}')
ON CONFLICT DO NOTHING;

-- Campaigns: a draft at Acme; at Globex a draft, a scheduled one, and one started below.
INSERT INTO public.campaigns (id, tenant_id, name, group_id, template_id, status, scheduled_at) VALUES
    ('44000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', 'Spring sale',
     '41000000-0000-4000-8000-000000000001', '43000000-0000-4000-8000-000000000002', 'draft', NULL),
    ('44000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000002', 'Launch',
     '41000000-0000-4000-8000-000000000002', '43000000-0000-4000-8000-000000000003', 'draft', NULL),
    ('44000000-0000-4000-8000-000000000003', '10000000-0000-4000-8000-000000000002', 'Weekly digest',
     '41000000-0000-4000-8000-000000000002', '43000000-0000-4000-8000-000000000003', 'scheduled', now() + interval '1 day'),
    ('44000000-0000-4000-8000-000000000004', '10000000-0000-4000-8000-000000000002', 'Reminder wave',
     '41000000-0000-4000-8000-000000000002', '43000000-0000-4000-8000-000000000001', 'draft', NULL)
ON CONFLICT DO NOTHING;

-- Start the reminder wave once (recipients snapshot + queued messages); later runs find it running.
SELECT rpc.campaign_start(id) FROM public.campaigns
 WHERE id = '44000000-0000-4000-8000-000000000004' AND status = 'draft';

-- A webhook at Acme (its secret is generated; rotate it with rpc.webhook_regenerate_secret).
INSERT INTO public.webhooks (id, tenant_id, name, url, events) VALUES
    ('45000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', 'CRM sync',
     'https://example.com/hooks/rowcast', '{contact_created,contact_updated,campaign_status_changed}')
ON CONFLICT DO NOTHING;
