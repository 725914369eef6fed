"""agent call rollup: report_call_agents and report_agent_intervals (reports/agent_rollup.py)

After upgrading a database that already holds calls, fill the rollup once with
`callcenter report rebuild`: until then the agent report shows no calls for them.

Revision ID: 0805_agent_call_rollup
Revises: 0804_winback_callback
Create Date: 2026-12-03 09:00:00
"""
import sqlalchemy as sa
from alembic import op

import core.models

revision = '0805_agent_call_rollup'
down_revision = '0804_winback_callback'
branch_labels = None
depends_on = None

_FIGURES = (('handled', sa.Integer), ('transfers', sa.Integer), ('talk_n', sa.Integer),
            ('talk_sum', sa.Float), ('wrap_n', sa.Integer), ('wrap_sum', sa.Float),
            ('csat_n', sa.Integer), ('csat_sum', sa.Float), ('hold_sum', sa.Float))


def _figures() -> list[sa.Column]:
    return [sa.Column(name, kind(), nullable=False) for name, kind in _FIGURES]


def upgrade() -> None:
    op.create_table('report_call_agents',
    sa.Column('call_id', sa.String(length=128), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    sa.Column('start', core.models.UTCDateTime(timezone=True), nullable=False),
    *_figures(),
    sa.PrimaryKeyConstraint('call_id', 'agent_id', name=op.f('pk_report_call_agents'))
    )
    with op.batch_alter_table('report_call_agents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_report_call_agents_start'), ['start'],
                              unique=False)
    op.create_table('report_agent_intervals',
    sa.Column('start', core.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('agent_id', sa.Integer(), nullable=False),
    *_figures(),
    sa.PrimaryKeyConstraint('start', 'agent_id', name=op.f('pk_report_agent_intervals'))
    )


def downgrade() -> None:
    op.drop_table('report_agent_intervals')
    with op.batch_alter_table('report_call_agents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_report_call_agents_start'))
    op.drop_table('report_call_agents')
