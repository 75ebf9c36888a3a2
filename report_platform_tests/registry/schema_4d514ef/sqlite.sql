-- The registry's schema on SQLite as the release at commit 4d514ef created it:
-- the DDL of Base.metadata.create_all in `git show 4d514ef:report_platform/registry/models.py`.

CREATE TABLE organizations (
	id VARCHAR(64) NOT NULL,
	name VARCHAR(200) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id)
);

CREATE TABLE users (
	id INTEGER NOT NULL,
	email VARCHAR(320) NOT NULL,
	display_name VARCHAR(200) NOT NULL,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (email)
);

CREATE TABLE workspaces (
	id VARCHAR(64) NOT NULL,
	organization_id VARCHAR(64) NOT NULL,
	name VARCHAR(200) NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(organization_id) REFERENCES organizations (id)
);

CREATE INDEX ix_workspaces_organization_id ON workspaces (organization_id);

CREATE TABLE memberships (
	id INTEGER NOT NULL,
	user_id INTEGER NOT NULL,
	organization_id VARCHAR(64) NOT NULL,
	role VARCHAR(16) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (user_id, organization_id),
	FOREIGN KEY(user_id) REFERENCES users (id),
	FOREIGN KEY(organization_id) REFERENCES organizations (id)
);

CREATE INDEX ix_memberships_organization_id ON memberships (organization_id);

CREATE INDEX ix_memberships_user_id ON memberships (user_id);

CREATE TABLE folders (
	id INTEGER NOT NULL,
	organization_id VARCHAR(64) NOT NULL,
	name VARCHAR(200) NOT NULL,
	created_at DATETIME NOT NULL,
	created_by VARCHAR(320) NOT NULL,
	PRIMARY KEY (id),
	UNIQUE (organization_id, name),
	FOREIGN KEY(organization_id) REFERENCES organizations (id)
);

CREATE INDEX ix_folders_organization_id ON folders (organization_id);

CREATE TABLE membership_workspaces (
	membership_id INTEGER NOT NULL,
	workspace_id VARCHAR(64) NOT NULL,
	PRIMARY KEY (membership_id, workspace_id),
	FOREIGN KEY(membership_id) REFERENCES memberships (id),
	FOREIGN KEY(workspace_id) REFERENCES workspaces (id)
);

CREATE TABLE reports (
	id VARCHAR(32) NOT NULL,
	organization_id VARCHAR(64) NOT NULL,
	workspace_id VARCHAR(64),
	name VARCHAR(200) NOT NULL,
	type VARCHAR(64) NOT NULL,
	status VARCHAR(16) NOT NULL,
	folder_id INTEGER,
	definition JSON NOT NULL,
	created_at DATETIME NOT NULL,
	created_by VARCHAR(320) NOT NULL,
	updated_at DATETIME NOT NULL,
	updated_by VARCHAR(320) NOT NULL,
	deleted_at DATETIME,
	PRIMARY KEY (id),
	FOREIGN KEY(organization_id) REFERENCES organizations (id),
	FOREIGN KEY(workspace_id) REFERENCES workspaces (id),
	FOREIGN KEY(folder_id) REFERENCES folders (id)
);

CREATE INDEX ix_reports_organization_id ON reports (organization_id);

CREATE INDEX ix_reports_workspace_id ON reports (workspace_id);

CREATE INDEX ix_reports_folder_id ON reports (folder_id);

CREATE TABLE report_changes (
	id INTEGER NOT NULL,
	report_id VARCHAR(32) NOT NULL,
	at DATETIME NOT NULL,
	"by" VARCHAR(320) NOT NULL,
	action VARCHAR(16) NOT NULL,
	diff JSON NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(report_id) REFERENCES reports (id)
);

CREATE INDEX ix_report_changes_report_id ON report_changes (report_id);

CREATE TABLE report_runs (
	seq INTEGER NOT NULL,
	id VARCHAR(32) NOT NULL,
	report_id VARCHAR(32) NOT NULL,
	dagster_run_id VARCHAR(64),
	"trigger" VARCHAR(16) NOT NULL,
	requested_by VARCHAR(320),
	created_at DATETIME NOT NULL,
	scheduled_at DATETIME,
	requested_period_start DATE,
	requested_period_end DATE,
	period_start DATETIME,
	period_end DATETIME,
	started_at DATETIME,
	finished_at DATETIME,
	status VARCHAR(16) NOT NULL,
	rows BIGINT,
	bytes BIGINT,
	sha256 VARCHAR(64),
	delivered_to JSON NOT NULL,
	error TEXT,
	note TEXT,
	attempt INTEGER NOT NULL,
	notified_owner_at DATETIME,
	PRIMARY KEY (seq),
	UNIQUE (id),
	FOREIGN KEY(report_id) REFERENCES reports (id)
);

CREATE INDEX ix_report_runs_report_seq ON report_runs (report_id, seq);

CREATE INDEX ix_report_runs_report_id ON report_runs (report_id);

CREATE INDEX ix_report_runs_dagster_run_id ON report_runs (dagster_run_id);
