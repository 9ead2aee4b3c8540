#!/usr/bin/env node
// The integration guide's reference sync ("Example 1: Node.js Backend",
// shared/seeds/000_…, services/BansalAPIService.js and
// services/AppointmentSyncService.js), ported from MySQL to PostgreSQL as
// faithfully as the port allows, so bench/run can time it against crm_fdw.
//
//   node bench/reference_sync.js full|incremental
//
// What is the guide's, unchanged: one appointment at a time, awaited in turn;
// per appointment a SELECT of the existing row, then an INSERT or an UPDATE of
// every mapped column (mapAppointmentData), then createCRMRecords (contact
// looked up by email and inserted or updated, a lead inserted, a deal
// inserted when paid, the links written back) or updateCRMRecords (contact,
// lead and deal updated by id); each statement in its own implicit
// transaction; a sync log row; row errors caught, counted and logged.
//
// What had to change, and why:
// - The listing: the guide's polling example reads /appointments/recent; the
//   benchmark walks /appointments page by page (per_page 100) as its
//   "Strategy 2: Incremental Sync" describes, with updated_after = the start
//   time of the last completed sync (LAST_SYNC_TIME) for an incremental run.
// - SQL dialect: `INSERT … SET ?` becomes INSERT (cols) VALUES ($1…), and
//   `result.insertId` becomes RETURNING id.  `WHERE email = ?` becomes
//   lower(email) = lower($1): MySQL's default collation compares
//   case-insensitively, PostgreSQL's does not.
// - Tables: schema ref (bench/sql/schemas.sql) rather than crm, whose
//   triggers would create contacts, leads and deals a second time; rows carry
//   server_name 'reference' because ref.appointments copies crm.appointments.
// - HTTP: Node 20's built-in fetch (keep-alive) instead of axios, same headers
//   and 30 s timeout.  DB: one pg.Client, as the guide's awaited calls use one
//   connection at a time.
//
// Environment: CRM_MOCK_URL (the API base URL), CRM_MOCK_TOKEN, and the usual
// PGHOST/PGPORT/PGUSER/PGDATABASE.  Prints one JSON line with the counters.
'use strict';

const { Client } = require('pg');

const config = {
  apiUrl: process.env.CRM_MOCK_URL,
  apiToken: process.env.CRM_MOCK_TOKEN,
  perPage: 100,
  serverName: 'reference',
};

// ---- services/BansalAPIService.js ------------------------------------------

class BansalAPIService {
  constructor() {
    this.requests = 0;
  }

  async get(path, params = {}) {
    const url = new URL(config.apiUrl + path);
    for (const [k, v] of Object.entries(params)) {
      if (v !== undefined && v !== null) url.searchParams.set(k, String(v));
    }
    this.requests++;
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${config.apiToken}`, Accept: 'application/json' },
      signal: AbortSignal.timeout(30000),
    });
    const body = await response.text();
    if (!response.ok) {
      return this.handleError(response.status, body);
    }
    return JSON.parse(body);
  }

  /** Get appointments with incremental sync */
  async getAppointments(params = {}) {
    return this.get('/appointments', params);
  }

  handleError(status, data) {
    switch (status) {
      case 401: console.error('Authentication failed. Check your API token.'); break;
      case 429: console.error('Rate limit exceeded. Waiting before retry...'); break;
      case 500: console.error('Server error:', data); break;
      default: console.error(`API Error ${status}:`, data);
    }
    throw new Error(`API Error ${status}`);
  }
}

// ---- services/AppointmentSyncService.js --------------------------------------

class AppointmentSyncService {
  constructor(db, api) {
    this.db = db;
    this.api = api;
  }

  /** Walk every page (since LAST_SYNC_TIME when incremental) and process each row. */
  async syncAppointments(syncType) {
    const since = syncType === 'incremental' ? await this.lastSyncTime() : null;
    const syncLog = await this.createSyncLog(syncType);
    try {
      let fetched = 0, created = 0, updated = 0, failed = 0;
      for (let page = 1; ; page++) {
        const result = await this.api.getAppointments({
          per_page: config.perPage, page, updated_after: since ? since.toISOString() : undefined,
        });
        if (!result.success) {
          throw new Error('API returned unsuccessful response');
        }
        const appointments = result.data;
        fetched += appointments.length;
        await this.updateSyncLog(syncLog.id, { records_fetched: fetched });

        for (const appointment of appointments) {
          try {
            const r = await this.processAppointment(appointment);
            if (r === 'created') created++;
            if (r === 'updated') updated++;
          } catch (error) {
            console.error(`Failed to process appointment ${appointment.id}:`, error.message);
            failed++;
            await this.logSyncError(syncLog.id, appointment.id, error);
          }
        }
        if (appointments.length === 0 || page >= result.pagination.last_page) break;
      }
      await this.completeSyncLog(syncLog.id, {
        records_created: created, records_updated: updated, records_failed: failed, status: 'completed',
      });
      return { fetched, created, updated, failed };
    } catch (error) {
      console.error('Sync failed:', error.message);
      await this.failSyncLog(syncLog.id, error.message);
      throw error;
    }
  }

  /** Process individual appointment */
  async processAppointment(appointment) {
    // Check if appointment already exists
    const existing = (await this.db.query(
      'SELECT * FROM ref.appointments WHERE server_name = $1 AND external_id = $2',
      [config.serverName, appointment.id])).rows;

    // Map API data to CRM structure
    const appointmentData = this.mapAppointmentData(appointment);

    if (existing.length === 0) {
      await this.insert('ref.appointments', appointmentData);
      // Create related CRM records (lead, contact, deal)
      await this.createCRMRecords(appointmentData);
      return 'created';
    }
    await this.update('ref.appointments', appointmentData,
      'server_name = $1 AND external_id = $2', [config.serverName, appointment.id]);
    // Update related CRM records
    await this.updateCRMRecords(appointmentData, existing[0]);
    return 'updated';
  }

  /** Map Bansal API data to CRM database structure */
  mapAppointmentData(appointment) {
    return {
      server_name: config.serverName,
      external_id: appointment.id,
      client_name: appointment.full_name,
      client_email: appointment.email,
      client_phone: appointment.phone,
      appointment_datetime: appointment.appointment_datetime,
      duration_minutes: appointment.duration_minutes,
      location: appointment.location,
      meeting_type: appointment.meeting_type,
      preferred_language: appointment.preferred_language,
      enquiry_type: appointment.enquiry_type,
      enquiry_type_display: appointment.enquiry_type_display,
      service_type: appointment.service_type,
      specific_service: appointment.specific_service,
      enquiry_details: appointment.enquiry_details,
      status: appointment.status,
      status_display: appointment.status_display,
      confirmed_at: appointment.confirmed_at,
      cancelled_at: appointment.cancelled_at,
      cancellation_reason: appointment.cancellation_reason,
      is_paid: appointment.is_paid,
      amount: appointment.amount,
      discount_amount: appointment.discount_amount,
      final_amount: appointment.final_amount,
      promo_code: appointment.promo_code,
      payment_status: appointment.payment?.status,
      payment_method: appointment.payment?.payment_method,
      paid_at: appointment.payment?.paid_at,
      assigned_admin_id: appointment.assigned_admin?.id,
      assigned_admin_name: appointment.assigned_admin?.name,
      assigned_admin_email: appointment.assigned_admin?.email,
      admin_notes: appointment.admin_notes,
      client_notes: appointment.client_notes,
      source_created_at: appointment.created_at,
      source_updated_at: appointment.updated_at,
      last_synced_at: new Date(),
      sync_status: 'synced',
    };
  }

  /** Create related CRM records (Lead, Contact, Deal) */
  async createCRMRecords(appointmentData) {
    const contact = await this.upsertContact({
      name: appointmentData.client_name,
      email: appointmentData.client_email,
      phone: appointmentData.client_phone,
      preferred_language: appointmentData.preferred_language,
    });

    const lead = await this.createLead({
      contact_id: contact.id,
      source: 'Website Appointment',
      enquiry_type: appointmentData.enquiry_type_display,
      service_type: appointmentData.service_type,
      details: appointmentData.enquiry_details,
      status: 'new',
    });

    let deal = null;
    if (appointmentData.is_paid) {
      deal = await this.createDeal({
        contact_id: contact.id,
        lead_id: lead.id,
        title: `${appointmentData.enquiry_type_display} - ${appointmentData.client_name}`,
        amount: appointmentData.final_amount,
        stage: appointmentData.status === 'completed' ? 'won' : 'negotiation',
        expected_close_date: appointmentData.appointment_datetime,
      });
    }

    // Link back to appointment
    await this.db.query(
      'UPDATE ref.appointments SET crm_contact_id = $1, crm_lead_id = $2, crm_deal_id = $3'
      + ' WHERE server_name = $4 AND external_id = $5',
      [contact.id, lead.id, deal?.id ?? null, config.serverName, appointmentData.external_id]);
  }

  /** Update related CRM records */
  async updateCRMRecords(appointmentData, existingAppointment) {
    if (existingAppointment.crm_contact_id) {
      await this.updateContact(existingAppointment.crm_contact_id, {
        name: appointmentData.client_name,
        email: appointmentData.client_email,
        phone: appointmentData.client_phone,
      });
    }
    if (existingAppointment.crm_lead_id) {
      await this.updateLead(existingAppointment.crm_lead_id, {
        status: this.mapAppointmentStatusToLeadStatus(appointmentData.status),
      });
    }
    if (existingAppointment.crm_deal_id) {
      await this.updateDeal(existingAppointment.crm_deal_id, {
        stage: this.mapAppointmentStatusToDealStage(appointmentData.status),
        amount: appointmentData.final_amount,
      });
    }
  }

  mapAppointmentStatusToLeadStatus(appointmentStatus) {
    const mapping = {
      pending: 'new', confirmed: 'contacted', in_progress: 'qualified',
      completed: 'converted', cancelled: 'lost', no_show: 'lost',
    };
    return mapping[appointmentStatus] || 'new';
  }

  mapAppointmentStatusToDealStage(appointmentStatus) {
    const mapping = {
      pending: 'discovery', confirmed: 'proposal', in_progress: 'negotiation',
      completed: 'won', cancelled: 'lost', no_show: 'lost',
    };
    return mapping[appointmentStatus] || 'discovery';
  }

  // CRM helper methods
  async upsertContact(data) {
    const existing = (await this.db.query(
      'SELECT * FROM ref.contacts WHERE lower(email) = lower($1)', [data.email])).rows;
    if (existing.length > 0) {
      await this.update('ref.contacts', data, 'id = $1', [existing[0].id]);
      return existing[0];
    }
    const id = await this.insert('ref.contacts', data);
    return { id, ...data };
  }

  async createLead(data) {
    return { id: await this.insert('ref.leads', data), ...data };
  }

  async updateLead(id, data) {
    await this.update('ref.leads', data, 'id = $1', [id]);
  }

  async createDeal(data) {
    return { id: await this.insert('ref.deals', data), ...data };
  }

  async updateDeal(id, data) {
    await this.update('ref.deals', data, 'id = $1', [id]);
  }

  async updateContact(id, data) {
    await this.update('ref.contacts', data, 'id = $1', [id]);
  }

  // Sync log methods
  async lastSyncTime() {
    const r = await this.db.query(
      "SELECT max(sync_started_at) AS t FROM ref.sync_log WHERE status = 'completed'");
    return r.rows[0].t;
  }

  async createSyncLog(syncType) {
    const r = await this.db.query(
      'INSERT INTO ref.sync_log (sync_type, sync_started_at, status) VALUES ($1, now(), $2) RETURNING id',
      [syncType, 'running']);
    return { id: r.rows[0].id };
  }

  async updateSyncLog(id, data) {
    await this.update('ref.sync_log', data, 'id = $1', [id]);
  }

  async completeSyncLog(id, data) {
    await this.update('ref.sync_log', { ...data, sync_completed_at: new Date() }, 'id = $1', [id]);
  }

  async failSyncLog(id, errorMessage) {
    await this.db.query(
      'UPDATE ref.sync_log SET status = $1, error_message = $2, sync_completed_at = now() WHERE id = $3',
      ['failed', errorMessage, id]);
  }

  async logSyncError(syncLogId, externalAppointmentId, error) {
    await this.db.query(
      'INSERT INTO ref.sync_errors (sync_log_id, external_appointment_id, error_type, error_message, error_data)'
      + ' VALUES ($1, $2, $3, $4, $5)',
      [syncLogId, externalAppointmentId, error.name, error.message, JSON.stringify(error)]);
  }

  // `INSERT INTO t SET ?` and `UPDATE t SET ? WHERE …` of the guide's MySQL driver.
  async insert(table, data) {
    const cols = Object.keys(data);
    const r = await this.db.query(
      `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((_, i) => '$' + (i + 1)).join(', ')})`
      + ' RETURNING id', cols.map((c) => data[c] ?? null));
    return r.rows[0].id;
  }

  async update(table, data, where, whereArgs) {
    const cols = Object.keys(data);
    const n = whereArgs.length;
    await this.db.query(
      `UPDATE ${table} SET ${cols.map((c, i) => `${c} = $${n + i + 1}`).join(', ')} WHERE ${where}`,
      [...whereArgs, ...cols.map((c) => data[c] ?? null)]);
  }
}

async function main() {
  const mode = process.argv[2];
  if (mode !== 'full' && mode !== 'incremental') {
    console.error('usage: reference_sync.js full|incremental');
    process.exit(2);
  }
  const db = new Client();
  await db.connect();
  const api = new BansalAPIService();
  const started = process.hrtime.bigint();
  try {
    const r = await new AppointmentSyncService(db, api).syncAppointments(mode);
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(JSON.stringify({ mode, ...r, requests: api.requests, seconds }));
    process.exitCode = r.failed > 0 ? 1 : 0;
  } finally {
    await db.end();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
