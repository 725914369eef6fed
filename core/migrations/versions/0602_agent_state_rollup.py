"""agent-state rollup: report_agent_states, hold time in the call rollups, an index of each agent's changes by time, and
complaints by the time they were opened and with their call's queue (the reports'
complaint figures)

After upgrading a database that already holds agent state changes, fill the rollup
once with `callcenter report rebuild`.

Revision ID: 0602_agent_state_rollup
Revises: 0601_quality
Create Date: 2026-12-03 05:00:00
"""
import sqlalchemy as sa
from alembic import op

import core.models

revision = '0602_agent_state_rollup'
down_revision = '0601_quality'
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ('report_calls', 'report_intervals'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('hold_sum', sa.Float(), nullable=False,
                                          server_default='0'))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column('hold_sum', server_default=None)
    op.create_table('report_agent_states',
    sa.Column('start', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('start', 'agent_id', 'state', 'reason',
                            name=op.f('pk_report_agent_states'))
    )
    with op.batch_alter_table('agent_state_changes', schema=None) as batch_op:
        batch_op.create_index('ix_agent_state_changes_agent_at', ['agent_id', 'at'],
                              unique=False)
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.add_column(sa.Column('queue', sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f('ix_complaints_created_at'), ['created_at'],
                              unique=False)
    op.execute("UPDATE complaints SET queue = (SELECT i.queue FROM interactions i "
               "WHERE i.id = complaints.interaction_id) WHERE interaction_id IS NOT NULL")


def downgrade() -> None:
    for table in ('report_calls', 'report_intervals'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column('hold_sum')
    with op.batch_alter_table('complaints', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_complaints_created_at'))
        batch_op.drop_column('queue')
    with op.batch_alter_table('agent_state_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_agent_state_changes_agent_at')
    op.drop_table('report_agent_states')
