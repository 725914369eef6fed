"""agent hour rollup: report_agent_hours and report_agent_hour_reasons (reports/agent_days.py)

Each agent's call figures, seconds in each state and not-ready seconds by reason per
hour (UTC), on PostgreSQL. After upgrading a database that already holds calls or agent
states, fill them with `callcenter report rebuild`: until then an agent report by hour
(or by day in another zone than the center's) reads them and shows nothing for those
hours.

Revision ID: 0807_agent_hour_rollup
Revises: 0806_agent_day_rollup
Create Date: 2026-12-03 15:00:00
"""
import sqlalchemy as sa
from alembic import op

import core.models

revision = '0807_agent_hour_rollup'
down_revision = '0806_agent_day_rollup'
branch_labels = None
depends_on = None

_FIGURES = (('handled', sa.Integer), ('transfers', sa.Integer), ('talk_n', sa.Integer),
            ('talk_sum', sa.Float), ('wrap_n', sa.Integer), ('wrap_sum', sa.Float),
            ('csat_n', sa.Integer), ('csat_sum', sa.Float), ('hold_sum', sa.Float),
            ('available_s', sa.Float), ('ringing_s', sa.Float), ('on_call_s', sa.Float),
            ('wrap_up_s', sa.Float), ('not_ready_s', sa.Float))


def _hour_key() -> list[sa.Column]:
    return [sa.Column('start', core.models.UTCDateTime(timezone=True), nullable=False),
            sa.Column('agent_id', sa.Integer(), nullable=False)]


def upgrade() -> None:
    op.create_table('report_agent_hours', *_hour_key(),
    *[sa.Column(name, kind(), nullable=False) for name, kind in _FIGURES],
    sa.PrimaryKeyConstraint('start', 'agent_id', name=op.f('pk_report_agent_hours'))
    )
    op.create_table('report_agent_hour_reasons', *_hour_key(),
    sa.Column('reason', sa.String(length=32), nullable=False),
    sa.Column('seconds', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('start', 'agent_id', 'reason',
                            name=op.f('pk_report_agent_hour_reasons'))
    )


def downgrade() -> None:
    op.drop_table('report_agent_hour_reasons')
    op.drop_table('report_agent_hours')
